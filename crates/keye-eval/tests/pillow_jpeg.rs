//! VLMEvalKit feeds Keye its images as Pillow-written quality-75 JPEGs; keye eval writes the
//! very same bytes (goldens made by Pillow, see tests/data/pillow-jpeg/README.md).

use std::path::Path;

use base64::Engine;
use keye_eval::dataset::write_base64_image;

#[test]
fn materialised_jpegs_are_byte_identical_to_pillow() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pillow-jpeg");
    let out = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let source = entry.unwrap().path();
        if source.extension().is_none_or(|e| e != "png") {
            continue;
        }
        let name = source.file_stem().unwrap().to_str().unwrap().to_string();
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(&source).unwrap());
        let target = out.path().join(format!("{name}.jpg"));
        write_base64_image(&encoded, &target).unwrap();
        let ours = std::fs::read(&target).unwrap();
        let pillow = std::fs::read(golden.join(format!("{name}.jpg"))).unwrap();
        assert!(
            ours == pillow,
            "{name}: {} bytes vs Pillow's {}",
            ours.len(),
            pillow.len()
        );
        checked += 1;
    }
    assert_eq!(checked, 8);
}
