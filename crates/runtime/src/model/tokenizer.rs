//! Tokenizers: a thin wrapper over the `tokenizers` crate, plus the byte-level
//! tokenizer of the bundled tiny model.

use super::ModelError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
    /// For [`Tok::encode_shared`]: the longest added token in bytes, when
    /// the pipeline is one whose pieces depend only on nearby text.
    splice_margin: Option<usize>,
    /// Texts [`Tok::encode_shared`] encoded whole, least recently used first.
    anchors: Mutex<Vec<Anchor>>,
}

/// A text encoded whole: its tokens, their byte spans and pre-tokenizer pieces.
struct Anchor {
    text: String,
    ids: Vec<u32>,
    offsets: Vec<(usize, usize)>,
    words: Vec<Option<u32>>,
}

/// Texts shorter than this (bytes) are encoded whole by [`Tok::encode_shared`].
const SHARED_MIN_BYTES: usize = 512;

/// Texts [`Tok::encode_shared`] keeps encoded (an example's document in its
/// calls' contexts, its cut heads, the next example's).
const ANCHORS: usize = 4;

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
            splice_margin: splice_margin(&json),
            anchors: Mutex::new(Vec::new()),
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
            .encode_fast(text, specials)
            .map_err(|e| self.encode_error(e))?;
        Ok(enc.get_ids().to_vec())
    }

    fn encode_error(&self, e: tokenizers::Error) -> ModelError {
        ModelError::Tokenizer {
            path: self.path.clone(),
            message: format!("encoding failed: {e}"),
        }
    }

    /// Whether [`Self::encode_shared`] reuses earlier texts' tokens (else it encodes whole).
    pub fn reuses_prefixes(&self) -> bool {
        self.splice_margin.is_some()
    }

    /// The same ids as [`Self::encode`], computed by encoding only the end
    /// of `text` when it starts like a text encoded before: a document's
    /// label questions, a context and the context with its continuation.
    ///
    /// It applies to pipelines whose pieces depend only on nearby text (no
    /// normaliser; GPT-2's byte-level regex and digit splitting as
    /// pre-tokenizers; BPE without dropout; added tokens without
    /// stripping), such as SmolLM2's and GPT-2's; others are encoded whole.
    /// The pre-tokenizer's pieces that end well before where the two texts
    /// differ (three pieces and the longest added token before it) are the
    /// same in both, each piece is encoded on its own, so the earlier
    /// text's tokens up to the start of such a piece are kept and the rest
    /// of `text` is encoded from there. The piece encoded again must come
    /// out as before, else `text` is encoded whole.
    pub fn encode_shared(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let Some(margin) = self.splice_margin else {
            return self.encode(text);
        };
        if text.len() < SHARED_MIN_BYTES {
            return self.encode(text);
        }
        let mut anchors = self.anchors.lock().expect("anchors lock");
        let best = anchors
            .iter()
            .enumerate()
            .map(|(i, a)| (common_prefix(&a.text, text), i))
            .max();
        if let Some((shared, i)) = best {
            if let Some(ids) = self.splice(&anchors[i], text, shared, margin)? {
                let a = anchors.remove(i);
                anchors.push(a);
                return Ok(ids);
            }
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| self.encode_error(e))?;
        let ids = enc.get_ids().to_vec();
        if anchors.len() == ANCHORS {
            anchors.remove(0);
        }
        anchors.push(Anchor {
            text: text.to_string(),
            ids: ids.clone(),
            offsets: enc.get_offsets().to_vec(),
            words: enc.get_word_ids().to_vec(),
        });
        Ok(ids)
    }

    /// The ids of `text`, which shares its first `shared` bytes with
    /// `a.text`, from `a`'s tokens and `text` encoded from a piece's start;
    /// `None` when no piece starts far enough before `shared` or the piece
    /// encoded again differs.
    fn splice(
        &self,
        a: &Anchor,
        text: &str,
        shared: usize,
        margin: usize,
    ) -> Result<Option<Vec<u32>>, ModelError> {
        if shared == text.len() && shared == a.text.len() {
            return Ok(Some(a.ids.clone()));
        }
        let Some(range) = stable_piece(a, shared.saturating_sub(margin + 1)) else {
            return Ok(None);
        };
        let start = a.offsets[range.start].0;
        let Some(tail) = text.get(start..) else {
            return Ok(None);
        };
        let tail = self
            .inner
            .encode_fast(tail, false)
            .map_err(|e| self.encode_error(e))?;
        let tail = tail.get_ids();
        let again = &a.ids[range.clone()];
        if tail.len() < again.len() || tail[..again.len()] != *again {
            return Ok(None);
        }
        let mut ids = Vec::with_capacity(range.start + tail.len());
        ids.extend_from_slice(&a.ids[..range.start]);
        ids.extend_from_slice(tail);
        Ok(Some(ids))
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

/// Bytes in common at the start of `a` and `b`, on a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    let mut n = a
        .as_bytes()
        .iter()
        .zip(b.as_bytes())
        .take_while(|(x, y)| x == y)
        .count();
    while !b.is_char_boundary(n) {
        n -= 1;
    }
    n
}

/// The token range of the last piece of `a` that is followed by two whole
/// pieces before the first token ending after byte `end` (and is not the
/// first piece); `None` when there is none or a token has no piece.
fn stable_piece(a: &Anchor, end: usize) -> Option<std::ops::Range<usize>> {
    let words = &a.words;
    if words.iter().any(Option::is_none) {
        return None;
    }
    let t = a.offsets.partition_point(|o| o.1 <= end);
    // token index where each piece starts, walking back from the piece of token t
    let mut i = t;
    if i < words.len() {
        while i > 0 && words[i - 1] == words[i] {
            i -= 1;
        }
    }
    let mut starts = [i; 4];
    for s in starts.iter_mut().skip(1) {
        if i == 0 {
            return None;
        }
        let w = words[i - 1];
        i -= 1;
        while i > 0 && words[i - 1] == w {
            i -= 1;
        }
        *s = i;
    }
    (starts[3] > 0).then_some(starts[3]..starts[2])
}

/// For [`Tok::encode_shared`]: the longest added token's bytes when the
/// pipeline's pieces depend only on nearby text (no normaliser; byte-level
/// pre-tokenizing with GPT-2's regex and no added prefix space, digit
/// splitting, or a sequence of them; BPE without dropout; added tokens that
/// strip no whitespace and need no word boundary; offsets left untrimmed),
/// else `None`.
fn splice_margin(json: &serde_json::Value) -> Option<usize> {
    use serde_json::Value;
    fn local(p: &Value) -> bool {
        let flag = |k: &str| p.get(k).and_then(Value::as_bool);
        match p.get("type").and_then(Value::as_str) {
            Some("ByteLevel") => {
                flag("add_prefix_space") == Some(false) && flag("use_regex") != Some(false)
            }
            Some("Digits") => true,
            Some("Sequence") => p
                .get("pretokenizers")
                .and_then(Value::as_array)
                .is_some_and(|ps| ps.iter().all(local)),
            _ => false,
        }
    }
    let model = &json["model"];
    let bpe = model.get("type").and_then(Value::as_str) == Some("BPE")
        && model.get("dropout").is_none_or(Value::is_null);
    // a post-processor trimming offsets would move the pieces' starts
    let trims = json["post_processor"]
        .to_string()
        .contains("\"trim_offsets\":true");
    if !json["normalizer"].is_null() || !local(&json["pre_tokenizer"]) || !bpe || trims {
        return None;
    }
    let mut longest = 0;
    for t in json["added_tokens"].as_array().into_iter().flatten() {
        let flag = |k: &str| t.get(k).and_then(Value::as_bool) == Some(true);
        if flag("lstrip") || flag("rstrip") || flag("single_word") {
            return None;
        }
        longest = longest.max(t.get("content").and_then(Value::as_str)?.len());
    }
    Some(longest)
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
