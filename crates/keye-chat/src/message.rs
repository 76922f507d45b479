use keye_media::{ImageOptions, VideoOptions};

/// One chat turn. `role` is kept as the string the template sees (`system`, `user`, `assistant`).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Image(ImagePart),
    Video(VideoPart),
}

/// An image reference: a local path, `file://`, `http(s)://` or `data:` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePart {
    pub source: String,
    pub options: ImageOptions,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VideoPart {
    pub source: VideoSource,
    pub options: VideoOptions,
}

/// A video file or URL, or a list of frame images (each a path or URL).
#[derive(Clone, Debug, PartialEq)]
pub enum VideoSource {
    File(String),
    Frames(Vec<String>),
}
