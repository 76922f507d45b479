use crate::message::{Content, Message, Part};

/// Keye's thinking switch. It is in-band: the Keye README appends `/think` or `/no_think` directly
/// to the user's text (`"Describe this image./no_think"`); with neither the model decides itself
/// (auto-think; Keye-VL-1.5 then opens with an `<analysis>` span).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThinkingMode {
    #[default]
    Auto,
    Think,
    NoThink,
}

const THINK_SWITCH: &str = "/think";
const NO_THINK_SWITCH: &str = "/no_think";

impl ThinkingMode {
    /// The switch this mode appends to the last user turn, if any.
    pub fn switch(self) -> Option<&'static str> {
        match self {
            ThinkingMode::Auto => None,
            ThinkingMode::Think => Some(THINK_SWITCH),
            ThinkingMode::NoThink => Some(NO_THINK_SWITCH),
        }
    }

    /// The mode selected by a switch at the end of `text` (trailing whitespace ignored).
    pub fn of_text(text: &str) -> ThinkingMode {
        let text = text.trim_end();
        if text.ends_with(NO_THINK_SWITCH) {
            ThinkingMode::NoThink
        } else if text.ends_with(THINK_SWITCH) {
            ThinkingMode::Think
        } else {
            ThinkingMode::Auto
        }
    }

    /// The mode the user already selected in the last user turn.
    pub fn of_messages(messages: &[Message]) -> ThinkingMode {
        last_user_text(messages).map_or(ThinkingMode::Auto, ThinkingMode::of_text)
    }

    /// Appends this mode's switch to the text of the last user turn and returns the mode in
    /// effect. Nothing is added for `Auto`, when there is no user turn, or when the user already
    /// ended the turn with a switch (which then stays in effect).
    pub fn apply(self, messages: &mut [Message]) -> ThinkingMode {
        let written = ThinkingMode::of_messages(messages);
        if written != ThinkingMode::Auto {
            return written;
        }
        let (Some(switch), Some(message)) = (
            self.switch(),
            messages
                .iter_mut()
                .rev()
                .find(|message| message.role == "user"),
        ) else {
            return ThinkingMode::Auto;
        };
        match &mut message.content {
            Content::Text(text) => text.push_str(switch),
            Content::Parts(parts) => match parts.last_mut() {
                Some(Part::Text(text)) => text.push_str(switch),
                // The switch has to come last in the turn, after any image or video.
                _ => parts.push(Part::Text(switch.to_owned())),
            },
        }
        self
    }
}

/// The text at the end of the last user turn: its string content, or its last part if that is
/// text.
fn last_user_text(messages: &[Message]) -> Option<&str> {
    let message = messages
        .iter()
        .rev()
        .find(|message| message.role == "user")?;
    match &message.content {
        Content::Text(text) => Some(text),
        Content::Parts(parts) => match parts.last()? {
            Part::Text(text) => Some(text),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keye_media::ImageOptions;

    use crate::message::ImagePart;

    fn image() -> Part {
        Part::Image(ImagePart {
            source: "a.png".into(),
            options: ImageOptions::default(),
        })
    }

    #[test]
    fn appends_switch_directly_to_last_user_text() {
        let mut messages = vec![
            Message::user("first"),
            Message::assistant("reply"),
            Message::user(vec![image(), Part::Text("Describe this image.".into())]),
        ];
        assert_eq!(
            ThinkingMode::NoThink.apply(&mut messages),
            ThinkingMode::NoThink
        );
        assert_eq!(
            messages[2].content,
            Content::Parts(vec![
                image(),
                Part::Text("Describe this image./no_think".into())
            ])
        );
        assert_eq!(messages[0].content, Content::Text("first".into()));

        let mut messages = vec![Message::user("Describe this image.")];
        assert_eq!(
            ThinkingMode::Think.apply(&mut messages),
            ThinkingMode::Think
        );
        assert_eq!(
            messages[0].content,
            Content::Text("Describe this image./think".into())
        );
    }

    #[test]
    fn auto_adds_nothing() {
        let mut messages = vec![Message::user("Describe this image.")];
        assert_eq!(ThinkingMode::Auto.apply(&mut messages), ThinkingMode::Auto);
        assert_eq!(
            messages[0].content,
            Content::Text("Describe this image.".into())
        );
    }

    #[test]
    fn existing_switch_is_kept() {
        let mut messages = vec![Message::user("Is this bright? /no_think")];
        assert_eq!(
            ThinkingMode::Think.apply(&mut messages),
            ThinkingMode::NoThink
        );
        assert_eq!(
            messages[0].content,
            Content::Text("Is this bright? /no_think".into())
        );

        let mut messages = vec![Message::user("Solve it./think\n")];
        assert_eq!(
            ThinkingMode::NoThink.apply(&mut messages),
            ThinkingMode::Think
        );
        assert_eq!(
            messages[0].content,
            Content::Text("Solve it./think\n".into())
        );
    }

    #[test]
    fn switch_goes_after_trailing_media() {
        let mut messages = vec![Message::user(vec![
            Part::Text("What is it?".into()),
            image(),
        ])];
        ThinkingMode::Think.apply(&mut messages);
        assert_eq!(
            messages[0].content,
            Content::Parts(vec![
                Part::Text("What is it?".into()),
                image(),
                Part::Text("/think".into())
            ])
        );
    }

    #[test]
    fn no_user_turn_is_left_alone() {
        let mut messages = vec![Message::system("You are terse.")];
        assert_eq!(ThinkingMode::Think.apply(&mut messages), ThinkingMode::Auto);
        assert_eq!(messages[0].content, Content::Text("You are terse.".into()));
    }
}
