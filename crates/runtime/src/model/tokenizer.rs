//! Tokenizers: a thin wrapper over the `tokenizers` crate, plus the byte-level
//! tokenizer of the bundled tiny model.

use super::ModelError;
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// A token's character span `[start, end)` in the encoded text.
pub type CharSpan = (usize, usize);

/// Token ids, their character spans and the word (pre-tokenizer piece) of each.
pub type Worded = (Vec<u32>, Vec<CharSpan>, Vec<Option<u32>>);

/// A loaded tokenizer with the file it came from.
pub struct Tok {
    inner: Tokenizer,
    path: PathBuf,
}

impl Tok {
    /// Loads a `tokenizer.json`, turning off any fixed padding or truncation it
    /// enables (EdgeBench pads and truncates itself).
    ///
    /// The `tokenizers` crate panics on some malformed files instead of
    /// returning an error: it `expect`s its decoder and normaliser sub-parsers
    /// to succeed (a `Precompiled` normaliser's charsmap), cuts the subword
    /// prefix off BPE merges by length, and reads templates naming undefined
    /// special tokens only to panic when encoding.
    /// The JSON is checked for these first, and a panic left over becomes an
    /// error naming the file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let err = |message: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?;
        check_templates(&json["post_processor"])
            .map_err(|e| err(format!("not a valid tokenizer.json: post_processor: {e}")))?;
        check_merges(&json["model"])
            .map_err(|e| err(format!("not a valid tokenizer.json: model: {e}")))?;
        check_charsmaps(&json["normalizer"])
            .map_err(|e| err(format!("not a valid tokenizer.json: normalizer: {e}")))?;
        let parsed = std::panic::catch_unwind(|| text.parse::<Tokenizer>()).map_err(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            err(format!(
                "not a valid tokenizer.json: the tokenizers library failed on it ({why})"
            ))
        })?;
        let mut inner = parsed.map_err(|e| err(format!("not a valid tokenizer.json: {e}")))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        Ok(Tok {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.ids(text, false)
    }

    /// Token ids of `text` with the tokenizer's own special tokens (e.g. BERT's [CLS] ... [SEP]).
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.ids(text, true)
    }

    fn ids(&self, text: &str, specials: bool) -> Result<Vec<u32>, ModelError> {
        let enc = self
            .inner
            .encode(text, specials)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                message: format!("encoding failed: {e}"),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` without special tokens, with each token's
    /// character span `[start, end)` in `text`.
    pub fn encode_with_char_offsets(
        &self,
        text: &str,
    ) -> Result<(Vec<u32>, Vec<CharSpan>), ModelError> {
        let (ids, spans, _) = self.encode_with_words(text)?;
        Ok((ids, spans))
    }

    /// [`Self::encode_with_char_offsets`] with the word (pre-tokenizer
    /// piece) each token belongs to, when the tokenizer says.
    pub fn encode_with_words(&self, text: &str) -> Result<Worded, ModelError> {
        let enc =
            self.inner
                .encode_char_offsets(text, false)
                .map_err(|e| ModelError::Tokenizer {
                    path: self.path.clone(),
                    message: format!("encoding failed: {e}"),
                })?;
        Ok((
            enc.get_ids().to_vec(),
            enc.get_offsets().to_vec(),
            enc.get_word_ids().to_vec(),
        ))
    }

    /// Id of the token `token` (e.g. `[CLS]`), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                message: format!("decoding failed: {e}"),
            })
    }
}

/// Checks every `TemplateProcessing` in a `post_processor` (any object with a
/// `single` or `pair` template, possibly inside a `Sequence`) the way
/// `tokenizers`' builder does and its file reader does not: each special
/// token its templates name is in its `special_tokens`, with as many ids as
/// tokens, and the single-sequence template uses `$A` only. Otherwise
/// encoding with special tokens panics.
fn check_templates(v: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            // tokenizers reads any object with templates as one, whatever its "type" says
            Value::Object(m) if m.contains_key("single") || m.contains_key("pair") => {
                let specials = m.get("special_tokens").and_then(Value::as_object);
                for (key, t) in specials.into_iter().flatten() {
                    let n = |f: &str| t.get(f).and_then(Value::as_array).map(Vec::len);
                    if n("ids") != n("tokens") {
                        return Err(format!(
                            "special token `{key}` has {:?} ids but {:?} tokens",
                            n("ids"),
                            n("tokens")
                        ));
                    }
                }
                for template in ["single", "pair"] {
                    let pieces = m.get(template).and_then(Value::as_array);
                    for piece in pieces.into_iter().flatten() {
                        if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str)
                        {
                            if !specials.is_some_and(|s| s.contains_key(id)) {
                                return Err(format!(
                                    "template `{template}` names special token `{id}`, which \
                                     `special_tokens` does not define"
                                ));
                            }
                        }
                        let seq = piece.pointer("/Sequence/id").and_then(Value::as_str);
                        if template == "single" && seq.is_some_and(|s| s != "A") {
                            return Err("template `single` uses a second sequence ($B)".to_string());
                        }
                    }
                }
            }
            Value::Object(m) => todo.extend(m.values()),
            Value::Array(a) => todo.extend(a),
            _ => {}
        }
    }
    Ok(())
}

/// Checks that the second token of every BPE merge is at least as long as
/// the model's `continuing_subword_prefix`: `tokenizers` cuts the prefix off
/// it by length, and panics when it cannot.
fn check_merges(model: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let Some(prefix) = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let merges = model.get("merges").and_then(Value::as_array);
    for (i, m) in merges.into_iter().flatten().enumerate() {
        let second = match m {
            Value::String(s) => s.split(' ').nth(1),
            Value::Array(pair) => pair.get(1).and_then(Value::as_str),
            _ => None,
        };
        if let Some(b) = second.filter(|b| !b.is_char_boundary(prefix.len())) {
            return Err(format!(
                "merge {i} ({m}): `{b}` does not start with a whole \
                 continuing_subword_prefix `{prefix}`"
            ));
        }
    }
    Ok(())
}

/// Reads every `Precompiled` normaliser's charsmap (possibly inside a
/// `Sequence`) as `tokenizers` does, but keeps the error it `expect`s away.
fn check_charsmaps(v: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("Precompiled") => {
                // from text, as tokenizers does: the charsmap is read as a borrowed string
                serde_json::from_str::<tokenizers::normalizers::Precompiled>(&v.to_string())
                    .map_err(|e| format!("Precompiled: {e}"))?;
            }
            Value::Object(m) => todo.extend(m.values()),
            Value::Array(a) => todo.extend(a),
            _ => {}
        }
    }
    Ok(())
}

/// GPT-2's byte-to-unicode table: the printable character standing for each byte.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| {
        (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    for b in 0..256u32 {
        table[b as usize] = if printable(b) {
            char::from_u32(b).expect("valid")
        } else {
            let c = char::from_u32(next).expect("valid");
            next += 1;
            c
        };
    }
    table
}

/// Special end-of-text token of the byte-level tokenizer (id 256).
pub const BYTE_EOT: &str = "<|endoftext|>";

/// Writes a byte-level tokenizer (ids 0-255 are the bytes, 256 is
/// [`BYTE_EOT`]) to `path`, as a standard `tokenizer.json`.
pub fn write_byte_tokenizer(path: &Path) -> Result<(), ModelError> {
    let table = bytes_to_unicode();
    let vocab: tokenizers::models::bpe::Vocab = table
        .iter()
        .enumerate()
        .map(|(b, c)| (c.to_string(), b as u32))
        .collect();
    let err = |e: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        message: e,
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, false, false)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.add_special_tokens(&[AddedToken::from(BYTE_EOT, true)]);
    tok.save(path, false).map_err(|e| err(e.to_string()))
}
