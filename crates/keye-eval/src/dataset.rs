//! VLMEvalKit dataset files: which file a name means, how it is parsed, and how its images are
//! materialised on disk before the model sees them.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use base64::Engine;
use md5::{Digest, Md5};

use crate::error::EvalError;
use crate::metrics::VqaMetric;
use crate::python::{parse_int, to_list_str};
use crate::table::{Table, read_delimited};

/// The four dataset families of v1, also the values of `--type` for custom datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetType {
    /// Multiple choice with options in columns `A`..`Z`.
    Mcq,
    /// Yes/No questions.
    Yorn,
    /// Open-ended questions scored by a VQA metric.
    Vqa,
    /// Video multiple choice (Video-MME layout).
    VideoMcq,
}

/// Everything that decides how a dataset is prompted and scored.
#[derive(Debug, Clone, PartialEq)]
pub enum Benchmark {
    Mcq { circular: bool, mmmu: bool },
    YesNo(YesNoRating),
    Vqa(VqaScoring),
    VideoMme(FrameSampling),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YesNoRating {
    Mme,
    Hallusion,
    Pope,
    Amber,
    Default,
    /// KC-MMBench Y/N tasks: Chinese gold answers and prompt suffix.
    Kwai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VqaScoring {
    Metric(VqaMetric),
    OcrBench,
    MathVista,
    /// KC-MMBench CPV / Collection_Order: judge says 回答正确 or 回答错误.
    KwaiJudge,
    /// KC-MMBench Hot_Videos_Aggregation: judge extracts a 是/否 list.
    KwaiTopic,
}

/// Video-MME frame sampling of a named preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameSampling {
    Frames(u32),
    Fps(f64),
}

/// A dataset name resolved to its family, behaviour and file naming.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    pub name: String,
    pub dataset_type: DatasetType,
    pub benchmark: Benchmark,
    pub md5: Option<&'static str>,
    /// The file name Kwai ships a KC-MMBench task under (`PornComment` for `Pornographic_Comment`).
    pub legacy_file: Option<&'static str>,
}

const KNOWN_MD5: [(&str, &str); 40] = [
    ("MMBench_DEV_EN", "b6caf1133a01c6bb705cf753bb527ed8"),
    ("MMBench_TEST_EN", "6939fadb0ce626fefc0bdc9c64efc528"),
    ("MMBench_DEV_CN", "08b8fc3324a5ed74155350f57be69fbd"),
    ("MMBench_TEST_CN", "7e1239baf0ee4c8b513e19705a0f317e"),
    ("MMBench_DEV_EN_V11", "30c05be8f2f347a50be25aa067248184"),
    ("MMBench_TEST_EN_V11", "26f0f15381a21720255091d3e0316ce6"),
    ("MMBench_DEV_CN_V11", "593f9b5f6bea453d870a798b34ae4f37"),
    ("MMBench_TEST_CN_V11", "74bbe4556dac745613c7cbe5ad787050"),
    ("SEEDBench_IMG", "68017231464752261a2526d6ca3a10c0"),
    ("ScienceQA_VAL", "96320d05e142e585e7204e72affd29f3"),
    ("ScienceQA_TEST", "e42e9e00f9c59a80d8a5db35bc32b71f"),
    ("CCBench", "f5dde47f24dc5a6fb6e595b409b466ac"),
    ("AI2D_TEST", "0f593e0d1c7df9a3d69bf1f947e71975"),
    ("AI2D_TEST_NO_MASK", "fd8f463634d4fe9fbd23b876e8eea5be"),
    ("MMStar", "e1ecd2140806c1b1bbf54b43372efb9e"),
    ("RealWorldQA", "4de008f55dc4fd008ca9e15321dc44b7"),
    ("BLINK", "3b6649b6a662184ea046908e5506260e"),
    ("MMMU_DEV_VAL", "585e8ad75e73f75dcad265dfd0417d64"),
    ("MMMU_TEST", "c19875d11a2d348d07e5eb4bdf33166d"),
    ("MME", "b36b43c3f09801f5d368627fb92187c3"),
    ("HallusionBench", "0c23ac0dc9ef46832d7a24504f2a0c7c"),
    ("POPE", "c12f5acb142f2ef1f85a26ba2fbe41d5"),
    ("AMBER", "970d94c0410916166e0a76ba75da7934"),
    ("OCRVQA_TEST", "ca46a6d74b403e9d6c0b670f6fc00db9"),
    ("OCRVQA_TESTCORE", "c5239fe77db8bdc1f2ad8e55e0d1fe97"),
    ("TextVQA_VAL", "b233b31f551bbf4056f2f955da3a92cd"),
    ("DocVQA_VAL", "d5ee77e1926ff10690d469c56b73eabf"),
    ("DocVQA_TEST", "6a2f28cac26ef2d3447374e8c6f6c8e9"),
    ("InfoVQA_VAL", "2342e9c225222f0ef4dec545ebb126fe"),
    ("InfoVQA_TEST", "df535bf51b88dc9718252c34131a6227"),
    ("ChartQA_TEST", "c902e0aa9be5582a7aad6dcf52734b42"),
    ("GQA_TestDev_Balanced", "99b62f22e224d9b2f32dcbe41359d1c9"),
    ("OCRBench", "e953d98a987cc6e26ef717b61260b778"),
    ("MathVista_MINI", "f199b98e178e5a2a20e7048f5dcb0464"),
    ("Video-MME", "85bdd91f9b29a99354c23b97ab7c113c"),
    ("MMBench", "4115aea3383f3dd0083be6a633e0f820"),
    ("MMBench_CN", "2e053ffc90ea598b1feae13c36dc13ee"),
    ("MMBench_V11", "b9276414f57af1308dcc4d0cd9b42e7c"),
    ("MMBench_CN_V11", "95f6980dd1b4de38e3cbffe0305a3f25"),
    ("MMVP", "8cb732b141a0cba5b42159df2839e557"),
];

const MCQ_NAMES: [&str; 25] = [
    "MMBench_DEV_EN",
    "MMBench_TEST_EN",
    "MMBench_DEV_CN",
    "MMBench_TEST_CN",
    "MMBench",
    "MMBench_CN",
    "MMBench_DEV_EN_V11",
    "MMBench_TEST_EN_V11",
    "MMBench_DEV_CN_V11",
    "MMBench_TEST_CN_V11",
    "MMBench_V11",
    "MMBench_CN_V11",
    "MMStar",
    "AI2D_TEST",
    "AI2D_TEST_NO_MASK",
    "RealWorldQA",
    "SEEDBench_IMG",
    "ScienceQA_VAL",
    "ScienceQA_TEST",
    "BLINK",
    "CCBench",
    "MMMU_DEV_VAL",
    "MMMU_TEST",
    "MMVP",
    "MMCR",
];
const YORN_NAMES: [&str; 4] = ["MME", "HallusionBench", "POPE", "AMBER"];
const VQA_NAMES: [&str; 12] = [
    "TextVQA_VAL",
    "DocVQA_VAL",
    "DocVQA_TEST",
    "InfoVQA_VAL",
    "InfoVQA_TEST",
    "ChartQA_TEST",
    "OCRVQA_TEST",
    "OCRVQA_TESTCORE",
    "GQA_TestDev_Balanced",
    "OCRBench",
    "MathVista_MINI",
    "COCO_VAL",
];
/// KC-MMBench tasks: config key, shipped file name, family.
const KWAI_TASKS: [(&str, &str, DatasetType); 6] = [
    ("CPV", "CPV", DatasetType::Vqa),
    ("Hot_Videos_Aggregation", "Video_Topic", DatasetType::Vqa),
    ("Collection_Order", "Video_Order", DatasetType::Vqa),
    ("Pornographic_Comment", "PornComment", DatasetType::Yorn),
    ("High_like", "High_like", DatasetType::Yorn),
    ("SPU", "SPU", DatasetType::Yorn),
];

impl DatasetSpec {
    /// Resolves a dataset name. Unknown names need `dataset_type`; a given type always wins.
    pub fn resolve(
        name: &str,
        dataset_type: Option<DatasetType>,
    ) -> Result<DatasetSpec, EvalError> {
        // The KC README spells one task `High_Like`.
        let canonical = if name == "High_Like" {
            "High_like"
        } else {
            name
        };
        let md5 = KNOWN_MD5
            .iter()
            .find(|(n, _)| *n == canonical)
            .map(|&(_, m)| m);
        if let Some(&(task, file, family)) =
            KWAI_TASKS.iter().find(|(task, _, _)| *task == canonical)
        {
            let benchmark = match task {
                "Hot_Videos_Aggregation" => Benchmark::Vqa(VqaScoring::KwaiTopic),
                "CPV" | "Collection_Order" => Benchmark::Vqa(VqaScoring::KwaiJudge),
                _ => Benchmark::YesNo(YesNoRating::Kwai),
            };
            return Ok(DatasetSpec {
                name: task.to_string(),
                dataset_type: dataset_type.unwrap_or(family),
                benchmark,
                md5: None,
                legacy_file: Some(file),
            });
        }
        if let Some(sampling) = video_mme_preset(canonical)? {
            return Ok(DatasetSpec {
                name: canonical.to_string(),
                dataset_type: DatasetType::VideoMcq,
                benchmark: Benchmark::VideoMme(sampling),
                md5: KNOWN_MD5
                    .iter()
                    .find(|(n, _)| *n == "Video-MME")
                    .map(|&(_, m)| m),
                legacy_file: None,
            });
        }
        let known_type = if MCQ_NAMES.contains(&canonical) {
            Some(DatasetType::Mcq)
        } else if YORN_NAMES.contains(&canonical) {
            Some(DatasetType::Yorn)
        } else if VQA_NAMES.contains(&canonical) {
            Some(DatasetType::Vqa)
        } else {
            None
        };
        let dataset_type =
            dataset_type
                .or(known_type)
                .ok_or_else(|| EvalError::UnknownDataset {
                    dataset: name.to_string(),
                })?;
        if canonical == "COCO_VAL" {
            return Err(EvalError::InvalidDataset {
                dataset: name.into(),
                reason: "caption metrics (BLEU/CIDEr) are not part of keye eval v1".into(),
            });
        }
        let benchmark = match dataset_type {
            DatasetType::Mcq => {
                let lower = canonical.to_lowercase();
                let circular = ["mmbench", "ccbench", "circular", "mmcr"]
                    .iter()
                    .any(|k| lower.contains(k));
                Benchmark::Mcq {
                    circular,
                    mmmu: canonical.contains("MMMU"),
                }
            }
            DatasetType::Yorn => Benchmark::YesNo(if canonical.contains("MME") {
                YesNoRating::Mme
            } else if canonical.contains("Hallusion") {
                YesNoRating::Hallusion
            } else if canonical.contains("POPE") {
                YesNoRating::Pope
            } else if canonical.contains("AMBER") {
                YesNoRating::Amber
            } else {
                YesNoRating::Default
            }),
            DatasetType::Vqa => Benchmark::Vqa(match canonical {
                "OCRBench" => VqaScoring::OcrBench,
                "MathVista_MINI" => VqaScoring::MathVista,
                _ => VqaScoring::Metric(VqaMetric::for_dataset(canonical)),
            }),
            DatasetType::VideoMcq => {
                return Err(EvalError::InvalidDataset {
                    dataset: name.into(),
                    reason: "video datasets are named by preset, e.g. Video-MME_8frame or Video-MME_1fps".into(),
                });
            }
        };
        Ok(DatasetSpec {
            name: canonical.to_string(),
            dataset_type,
            benchmark,
            md5,
            legacy_file: None,
        })
    }

    /// The `$LMUData/images/<root>` folder name VLMEvalKit materialises images into.
    pub fn image_root_name(&self) -> &str {
        let name = self.name.as_str();
        if name.contains("MM_NIAH") {
            "MMNIAH"
        } else if name.contains("CRPE") {
            "CRPE"
        } else if name.contains("OCRVQA") {
            "OCRVQA"
        } else if name == "COCO_VAL" {
            "COCO"
        } else if name.contains("MMMU") {
            "MMMU"
        } else if name.contains("QSpatial") {
            "QSpatial"
        } else {
            match name {
                "MMBench_DEV_EN" | "MMBench_TEST_EN" | "MMBench_DEV_CN" | "MMBench_TEST_CN"
                | "MMBench" | "MMBench_CN" | "MMBench_V11" | "MMBench_CN_V11" => "MMBench",
                "MMBench_DEV_EN_V11"
                | "MMBench_TEST_EN_V11"
                | "MMBench_DEV_CN_V11"
                | "MMBench_TEST_CN_V11" => "MMBench_V11",
                _ if matches!(self.benchmark, Benchmark::VideoMme(_)) => "Video-MME",
                _ => name,
            }
        }
    }

    pub fn is_kwai(&self) -> bool {
        self.legacy_file.is_some()
    }
}

/// `Video-MME_<n>frame[_subs]` / `Video-MME_<f>fps[_subs]`.
fn video_mme_preset(name: &str) -> Result<Option<FrameSampling>, EvalError> {
    if name == "Video-MME" {
        return Err(EvalError::InvalidDataset {
            dataset: name.into(),
            reason:
                "name a frame preset, e.g. Video-MME_8frame, Video-MME_64frame or Video-MME_1fps"
                    .into(),
        });
    }
    let Some(preset) = name.strip_prefix("Video-MME_") else {
        return Ok(None);
    };
    if preset.ends_with("_subs") {
        return Err(EvalError::InvalidDataset {
            dataset: name.into(),
            reason: "subtitle presets need frame timestamps from video decoding, which keye eval does not do yet; \
                     use the preset without _subs"
                .into(),
        });
    }
    let invalid = || EvalError::InvalidDataset {
        dataset: name.into(),
        reason: "expected Video-MME_<n>frame or Video-MME_<f>fps".into(),
    };
    if let Some(count) = preset.strip_suffix("frame") {
        let frames: u32 = count.parse().map_err(|_| invalid())?;
        if frames == 0 {
            return Err(invalid());
        }
        Ok(Some(FrameSampling::Frames(frames)))
    } else if let Some(rate) = preset.strip_suffix("fps") {
        let fps: f64 = rate.parse().map_err(|_| invalid())?;
        if !(fps > 0.0 && fps.is_finite()) {
            return Err(invalid());
        }
        Ok(Some(FrameSampling::Fps(fps)))
    } else {
        Err(invalid())
    }
}

/// Where dataset files live.
#[derive(Debug, Clone)]
pub struct DataRoots {
    /// `$LMUData`: TSVs and the `images/` cache.
    pub lmu_data: PathBuf,
    /// KC-MMBench dataset folder (`subsets/*.tsv`, `images/`).
    pub kc_mmbench: PathBuf,
    /// Video-MME folder (`Video-MME.tsv`, `video/`, `subtitle/`).
    pub video_mme: PathBuf,
}

impl DataRoots {
    /// `LMUData` from the flag, else the `LMUData` environment variable if it is a directory,
    /// else `~/LMUData`; KC and Video-MME folders default to sub-folders of it.
    pub fn new(
        data_root: Option<PathBuf>,
        kc_root: Option<PathBuf>,
        video_root: Option<PathBuf>,
    ) -> DataRoots {
        let lmu_data = data_root.unwrap_or_else(default_lmu_data);
        DataRoots {
            kc_mmbench: kc_root.unwrap_or_else(|| lmu_data.join("KC-MMbench")),
            video_mme: video_root.unwrap_or_else(|| lmu_data.join("Video-MME")),
            lmu_data,
        }
    }
}

fn default_lmu_data() -> PathBuf {
    if let Some(env) = std::env::var_os("LMUData").map(PathBuf::from)
        && env.is_dir()
    {
        return env;
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join("LMUData")
}

/// How base64 images are written to disk before the model reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageEncoding {
    /// Exactly like VLMEvalKit: alpha dropped, saved by extension, `.jpg` as a quality-75 JPEG.
    #[default]
    Pillow,
    /// Alpha dropped, always saved as PNG: the decoded pixels reach the model unchanged.
    Lossless,
}

/// The MD5 of the dataset file and whether it matches the pinned constant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Md5Check {
    pub actual: String,
    pub expected: Option<String>,
}

impl Md5Check {
    pub fn matches(&self) -> Option<bool> {
        self.expected.as_ref().map(|e| *e == self.actual)
    }
}

/// A loaded dataset file.
#[derive(Debug)]
pub struct Dataset {
    pub spec: DatasetSpec,
    pub path: PathBuf,
    pub md5: Md5Check,
    pub table: Table,
    index_of: HashMap<String, usize>,
    image_dir: PathBuf,
    media_dir: PathBuf,
}

/// The largest base64 string accepted for one image (the biggest VLMEvalKit images are a few MB).
const MAX_IMAGE_BASE64: usize = 256 << 20;
/// VLMEvalKit treats `image` cells of at most this many characters as a reference to another row.
const IMAGE_REFERENCE_MAX_LEN: usize = 64;

impl Dataset {
    pub fn load(spec: DatasetSpec, roots: &DataRoots) -> Result<Dataset, EvalError> {
        let (path, media_dir) = locate(&spec, roots)?;
        let md5 = Md5Check {
            actual: file_md5(&path)?,
            expected: spec.md5.map(str::to_string),
        };
        if md5.matches() == Some(false) {
            tracing::warn!(
                dataset = %spec.name,
                expected = spec.md5,
                actual = %md5.actual,
                "dataset file MD5 differs from VLMEvalKit's pinned file; scores are only comparable with that file"
            );
        }
        let mut table = read_delimited(&path, b'\t')?;
        if !table.has_column("index") {
            if spec.dataset_type == DatasetType::VideoMcq {
                let indices = (0..table.len()).map(|i| Some(i.to_string())).collect();
                table.set_column("index", indices);
            } else {
                return Err(EvalError::InvalidDataset {
                    dataset: spec.name,
                    reason: "no `index` column".into(),
                });
            }
        }
        if !table.has_column("question") {
            return Err(EvalError::InvalidDataset {
                dataset: spec.name,
                reason: "no `question` column".into(),
            });
        }
        if spec.dataset_type != DatasetType::VideoMcq && table.has_column("image") {
            // skip_noimg: rows without an image are dropped at load time.
            let image = table.column("image").expect("checked");
            table.retain_rows(|row| row[image].is_some());
        }
        table.normalise_numeric_columns(&["image"]);
        let index_column = table.column("index").expect("checked");
        let mut index_of = HashMap::with_capacity(table.len());
        for (row, cells) in table.rows().enumerate() {
            let index = cells[index_column]
                .clone()
                .ok_or_else(|| EvalError::InvalidDataset {
                    dataset: spec.name.clone(),
                    reason: format!("row {} has no index", row + 1),
                })?;
            if index_of.insert(index.clone(), row).is_some() {
                return Err(EvalError::InvalidDataset {
                    dataset: spec.name.clone(),
                    reason: format!("index {index} appears twice"),
                });
            }
        }
        let image_dir = roots.lmu_data.join("images").join(spec.image_root_name());
        Ok(Dataset {
            spec,
            path,
            md5,
            table,
            index_of,
            image_dir,
            media_dir,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn row_index(&self, row: usize) -> &str {
        self.table.get(row, "index").expect("validated at load")
    }

    pub fn row_with_index(&self, index: &str) -> Option<usize> {
        self.index_of.get(index).copied()
    }

    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        self.table.get(row, column)
    }

    /// True when every index is an integer (VLMEvalKit then sorts and groups numerically).
    pub fn has_integer_indices(&self) -> bool {
        (0..self.len()).all(|row| parse_int(self.row_index(row)).is_some())
    }

    /// Options `A`..`Z` that exist as columns and are not missing, in letter order.
    pub fn options(&self, row: usize) -> Vec<(char, String)> {
        ('A'..='Z')
            .filter_map(|letter| {
                let mut buf = [0u8; 4];
                self.table
                    .get(row, letter.encode_utf8(&mut buf))
                    .map(|text| (letter, text.to_string()))
            })
            .collect()
    }

    pub fn image_dir(&self) -> &Path {
        &self.image_dir
    }

    /// Root that relative media paths of path-only datasets resolve against.
    pub fn media_dir(&self) -> &Path {
        &self.media_dir
    }

    /// The image files of `row`, materialising base64 images on first use.
    pub fn image_files(&self, row: usize, encoding: ImageEncoding) -> Result<Vec<PathBuf>, String> {
        let index = self.row_index(row);
        if self.spec.is_kwai() {
            return self.existing_media(row, &self.media_dir.join("images"));
        }
        let Some(image_cell) = self.resolved_image_cell(row)? else {
            return self.existing_media(row, &self.image_dir);
        };
        let images = to_list_str(image_cell)
            .ok_or("the `image` cell looks like a list but does not parse")?;
        let names = match self.table.get(row, "image_path") {
            Some(cell) => {
                Some(to_list_str(cell).ok_or("the `image_path` cell does not parse as a list")?)
            }
            None => None,
        };
        let targets: Vec<(String, &str)> = if images.len() > 1 {
            let names = names.unwrap_or_else(|| {
                (0..images.len())
                    .map(|i| format!("{index}_{i}.png"))
                    .collect()
            });
            names
                .into_iter()
                .zip(images.iter().map(String::as_str))
                .collect()
        } else {
            let name = match names {
                Some(names) if names.len() == 1 => names.into_iter().next().expect("one name"),
                Some(_) => return Err("one image but several `image_path` names".into()),
                None => format!("{index}.jpg"),
            };
            vec![(name, images.first().map_or("", String::as_str))]
        };
        targets
            .into_iter()
            .map(|(name, base64)| {
                let path = self.image_dir.join(encoded_name(&name, encoding));
                if !readable_image(&path) {
                    write_base64_image(base64, &path).map_err(|e| format!("image {name}: {e}"))?;
                }
                Ok(path)
            })
            .collect()
    }

    /// The `image` cell of `row` with a reference (a short cell naming another index) followed.
    /// `Ok(None)` for path-only datasets.
    fn resolved_image_cell(&self, row: usize) -> Result<Option<&str>, String> {
        let Some(cell) = self.table.get(row, "image") else {
            return Ok(None);
        };
        // Base64 is ASCII, so a long byte length settles it without counting characters.
        if cell.len() > 4 * IMAGE_REFERENCE_MAX_LEN
            || cell.chars().count() > IMAGE_REFERENCE_MAX_LEN
        {
            return Ok(Some(cell));
        }
        let target = self.row_with_index(cell).ok_or_else(|| {
            format!("the `image` cell refers to index {cell}, which does not exist")
        })?;
        match self.table.get(target, "image") {
            Some(image) if image.chars().count() > IMAGE_REFERENCE_MAX_LEN => Ok(Some(image)),
            _ => Err(format!(
                "the `image` cell refers to index {cell}, which holds no image"
            )),
        }
    }

    /// Path-only rows: `image_path` entries as given, else relative to `root`.
    fn existing_media(&self, row: usize, root: &Path) -> Result<Vec<PathBuf>, String> {
        let cell = self
            .table
            .get(row, "image_path")
            .ok_or("the row has neither `image` nor `image_path`")?;
        let paths = to_list_str(cell).ok_or("the `image_path` cell does not parse as a list")?;
        paths
            .iter()
            .map(|p| {
                let as_given = PathBuf::from(p);
                if !self.spec.is_kwai() && readable_image(&as_given) {
                    return Ok(as_given);
                }
                let joined = root.join(p);
                if joined.is_file() {
                    Ok(joined)
                } else {
                    Err(format!("image file {} not found", joined.display()))
                }
            })
            .collect()
    }
}

fn locate(spec: &DatasetSpec, roots: &DataRoots) -> Result<(PathBuf, PathBuf), EvalError> {
    let mut candidates = Vec::new();
    let media_dir;
    match &spec.benchmark {
        Benchmark::VideoMme(_) => {
            candidates.push(roots.video_mme.join("Video-MME.tsv"));
            media_dir = roots.video_mme.clone();
        }
        _ => {
            candidates.push(roots.lmu_data.join(format!("{}.tsv", spec.name)));
            if let Some(legacy) = spec.legacy_file {
                candidates.push(roots.lmu_data.join(format!("{legacy}.tsv")));
                candidates.push(
                    roots
                        .kc_mmbench
                        .join("subsets")
                        .join(format!("{legacy}.tsv")),
                );
                media_dir = roots.kc_mmbench.clone();
            } else {
                media_dir = roots.lmu_data.clone();
            }
        }
    }
    match candidates.iter().find(|p| p.is_file()) {
        Some(found) => Ok((found.clone(), media_dir)),
        None => Err(EvalError::DatasetMissing {
            dataset: spec.name.clone(),
            expected: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or "),
        }),
    }
}

fn file_md5(path: &Path) -> Result<String, EvalError> {
    let file = std::fs::File::open(path).map_err(EvalError::io(path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(EvalError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// In lossless mode every image is written as PNG next to where VLMEvalKit would put it.
fn encoded_name(name: &str, encoding: ImageEncoding) -> String {
    match encoding {
        ImageEncoding::Pillow => name.to_string(),
        ImageEncoding::Lossless => {
            let stem = Path::new(name).with_extension("");
            format!("{}.png", stem.display())
        }
    }
}

/// VLMEvalKit's `read_ok`: the file exists and opens as an image with a non-zero size.
fn readable_image(path: &Path) -> bool {
    path.is_file()
        && image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .is_some_and(|(w, h)| w > 0 && h > 0)
}

/// Decodes a base64 image, converts RGBA/LA/palette images to RGB by dropping alpha (Pillow's
/// `convert('RGB')`, no compositing), and saves it in the format its extension names.
pub fn write_base64_image(base64: &str, path: &Path) -> Result<(), String> {
    if base64.len() > MAX_IMAGE_BASE64 {
        return Err(format!(
            "base64 image of {} bytes exceeds the {} MiB limit",
            base64.len(),
            MAX_IMAGE_BASE64 >> 20
        ));
    }
    let bytes = decode_base64(base64)?;
    let decoded =
        image::load_from_memory(&bytes).map_err(|e| format!("not a decodable image: {e}"))?;
    let (width, height) = (decoded.width(), decoded.height());
    if width == 0 || height == 0 {
        return Err("the image is empty".into());
    }
    let converted = pillow_like_rgb(decoded);
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let encoded = match extension.as_str() {
        "jpg" | "jpeg" => pillow_jpeg(&converted, path)?,
        _ => {
            let format = image::ImageFormat::from_extension(&extension)
                .ok_or_else(|| format!("cannot save an image as .{extension}"))?;
            let mut encoded = Vec::new();
            converted
                .write_to(&mut std::io::Cursor::new(&mut encoded), format)
                .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
            encoded
        }
    };
    write_atomically(path, &encoded)
}

/// Pillow's default JPEG quality.
const PILLOW_JPEG_QUALITY: u8 = 75;

/// Pillow's `save(".jpg")`: libjpeg defaults at quality 75 (4:2:0 for colour).
fn pillow_jpeg(image: &image::DynamicImage, path: &Path) -> Result<Vec<u8>, String> {
    let too_large = |_| format!("{} is too large for JPEG", path.display());
    let width = u16::try_from(image.width()).map_err(too_large)?;
    let height = u16::try_from(image.height()).map_err(too_large)?;
    Ok(match image {
        image::DynamicImage::ImageLuma8(gray) => crate::jpeg::encode(
            crate::jpeg::Pixels::Gray(gray.as_raw()),
            width,
            height,
            PILLOW_JPEG_QUALITY,
        ),
        other => {
            let rgb = other.to_rgb8();
            crate::jpeg::encode(
                crate::jpeg::Pixels::Rgb(rgb.as_raw()),
                width,
                height,
                PILLOW_JPEG_QUALITY,
            )
        }
    })
}

/// Pillow keeps `L` and `RGB`, converts `RGBA`/`LA`/`P` to RGB by dropping alpha; 16-bit and
/// float images (which Pillow could not save as JPEG) are reduced to 8 bits.
fn pillow_like_rgb(image: image::DynamicImage) -> image::DynamicImage {
    use image::DynamicImage;
    match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => image,
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // Python's b64decode discards characters outside the alphabet (newlines in wrapped dumps).
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let filtered: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    let unpadded = filtered
        .iter()
        .position(|&b| b == b'=')
        .map_or(&filtered[..], |p| &filtered[..p]);
    LENIENT
        .decode(unpadded)
        .map_err(|e| format!("broken base64: {e}"))
}

/// Writes through a temporary file and a rename, so concurrent rows sharing an image never see
/// a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let parent = path.parent().ok_or("image path has no folder")?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let temporary = parent.join(format!(
        ".{}.{}.{:?}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("image"),
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&temporary, bytes)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .map_err(|e| format!("cannot move into {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_benchmarks() {
        let mmbench = DatasetSpec::resolve("MMBench_DEV_EN_V11", None).unwrap();
        assert_eq!(
            mmbench.benchmark,
            Benchmark::Mcq {
                circular: true,
                mmmu: false
            }
        );
        assert_eq!(mmbench.image_root_name(), "MMBench_V11");
        let mmmu = DatasetSpec::resolve("MMMU_DEV_VAL", None).unwrap();
        assert_eq!(
            mmmu.benchmark,
            Benchmark::Mcq {
                circular: false,
                mmmu: true
            }
        );
        assert_eq!(mmmu.image_root_name(), "MMMU");
        let kc = DatasetSpec::resolve("High_Like", None).unwrap();
        assert_eq!(
            (kc.name.as_str(), kc.legacy_file),
            ("High_like", Some("High_like"))
        );
        assert_eq!(kc.benchmark, Benchmark::YesNo(YesNoRating::Kwai));
        let video = DatasetSpec::resolve("Video-MME_8frame", None).unwrap();
        assert_eq!(
            video.benchmark,
            Benchmark::VideoMme(FrameSampling::Frames(8))
        );
        assert!(matches!(
            DatasetSpec::resolve("MyBench", None),
            Err(EvalError::UnknownDataset { .. })
        ));
        let custom = DatasetSpec::resolve("MyBench_circular", Some(DatasetType::Mcq)).unwrap();
        assert_eq!(
            custom.benchmark,
            Benchmark::Mcq {
                circular: true,
                mmmu: false
            }
        );
        assert!(DatasetSpec::resolve("Video-MME_8frame_subs", None).is_err());
    }

    #[test]
    fn lenient_base64() {
        assert_eq!(decode_base64("aGVs\nbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("a").is_err());
    }
}
