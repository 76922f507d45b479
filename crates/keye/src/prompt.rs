//! From a request to model inputs: media loaded and preprocessed, the chat template rendered,
//! placeholders expanded to token ids, and the 3-D positions computed.

use keye_chat::{Content, Part, RenderOptions};
use keye_media::GridThw;
use keye_model::Positions;

use crate::error::{Error, Result};
use crate::{Keye, Request};

/// Preprocessed visual items of one modality.
#[derive(Clone, Debug)]
pub struct VisualInput {
    /// `[patches, 3, P, P]` flattened, items concatenated.
    pub pixel_values: Vec<f32>,
    /// Vision blocks as the model runs them.
    pub grids: Vec<GridThw>,
    /// The grids as the reference processor reports them (`*_grid_thw`).
    pub trace_grids: Vec<GridThw>,
}

/// A request turned into model inputs.
#[derive(Clone, Debug)]
pub struct Prompt {
    /// The rendered chat template, before placeholder expansion.
    pub text: String,
    pub input_ids: Vec<u32>,
    pub positions: Positions,
    pub images: Option<VisualInput>,
    pub videos: Option<VisualInput>,
}

pub(crate) fn prepare(keye: &Keye, request: &Request) -> Result<Prompt> {
    if request.messages.is_empty() {
        return Err(Error::InvalidRequest("no messages".into()));
    }
    let generation = crate::media_generation(keye.model.architecture());
    let mut pixel_values = Vec::new();
    let mut grids = Vec::new();
    for message in &request.messages {
        let Content::Parts(parts) = &message.content else {
            continue;
        };
        for part in parts {
            match part {
                Part::Image(image) => {
                    let decoded = keye_media::load_image(
                        &image.source,
                        None,
                        &request.media_policy,
                        generation,
                    )?;
                    let processed = keye_media::preprocess_image(
                        &decoded,
                        &image.options,
                        &keye.processor,
                        generation,
                    )?;
                    pixel_values.extend_from_slice(&processed.pixel_values);
                    grids.push(processed.plan.grid);
                }
                Part::Video(_) => {
                    return Err(Error::InvalidRequest(
                        "video input is not supported yet".into(),
                    ));
                }
                Part::Text(_) => {}
            }
        }
    }
    let mut messages = request.messages.clone();
    request.thinking.apply(&mut messages);
    let options = RenderOptions {
        add_generation_prompt: true,
        ..RenderOptions::default()
    };
    let text = keye.template.render(&messages, &options)?;
    let input_ids = keye.assembler.assemble(&text, &grids, &[])?;
    let positions = keye.model.positions(&input_ids, &grids, &[])?;
    let images = (!grids.is_empty()).then(|| VisualInput {
        pixel_values,
        trace_grids: grids.clone(),
        grids,
    });
    Ok(Prompt {
        text,
        input_ids,
        positions,
        images,
        videos: None,
    })
}
