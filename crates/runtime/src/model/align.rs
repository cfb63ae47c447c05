//! Aligns two tokenizations of the same text: GEM assembled from public
//! checkpoints routes the tokens of its pathway tokenizer (byte-level BPE)
//! with a router that reads another tokenizer's tokens (WordPiece).
//!
//! The router sees `[CLS]` followed by the router tokens of the text the
//! pathway tokens decode to. Pathway token `i`, whose text ends at character
//! `e_i`, takes the router row of the last router token that ends at or
//! before `e_i` (`[CLS]`, row 0, when none does). With a causal router, no
//! route depends on any character after its own token: the routes of a
//! prefix never change when text is appended, so loglikelihoods stay well
//! defined.

use super::tokenizer::Tok;
use super::ModelError;
use std::path::Path;

/// The router's tokenizer and how to feed it.
pub struct RouterAlign {
    tok: Tok,
    cls: u32,
    /// Most router tokens the router reads (its position table).
    max_tokens: usize,
}

/// Router inputs for one pathway token sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aligned {
    /// `[CLS]` then the router tokens.
    pub router_ids: Vec<i64>,
    /// For each pathway token, its row in `router_ids`.
    pub align: Vec<i64>,
}

impl RouterAlign {
    /// Loads the router's `tokenizer.json` (which must have `[CLS]`).
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self, ModelError> {
        let tok = Tok::load(path)?;
        let cls = tok.token_id("[CLS]").ok_or_else(|| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message: "the router tokenizer has no [CLS] token; it must be the BERT router's tokenizer.json".into(),
        })?;
        Ok(RouterAlign {
            tok,
            cls,
            max_tokens: max_tokens.max(1),
        })
    }

    /// Router ids and the alignment of the pathway tokens `ids`, which
    /// `pathway` decodes.
    pub fn align(&self, pathway: &Tok, ids: &[u32]) -> Result<Aligned, ModelError> {
        // character end of each pathway token: length of the decoded prefix
        let mut ends = Vec::with_capacity(ids.len());
        let mut last = 0usize;
        for i in 0..ids.len() {
            let n = pathway.decode(&ids[..=i])?.chars().count();
            last = last.max(n);
            ends.push(last);
        }
        let text = pathway.decode(ids)?;
        let (rids, offsets) = self.tok.encode_with_char_offsets(&text)?;
        let keep = rids.len().min(self.max_tokens - 1);
        let mut router_ids = Vec::with_capacity(keep + 1);
        router_ids.push(self.cls as i64);
        router_ids.extend(rids[..keep].iter().map(|&i| i as i64));
        let mut align = Vec::with_capacity(ids.len());
        let mut j = 0usize; // router tokens (after CLS) ending at or before the current end
        for &e in &ends {
            while j < keep && offsets[j].1 <= e {
                j += 1;
            }
            align.push(j as i64);
        }
        Ok(Aligned { router_ids, align })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wordpiece(dir: &Path) -> std::path::PathBuf {
        let words = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", "!",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i.into()))
            .collect();
        let tok = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
        });
        let p = dir.join("router.json");
        std::fs::write(&p, tok.to_string()).unwrap();
        p
    }

    #[test]
    fn pathway_tokens_take_the_last_router_token_ending_before_them() {
        let dir = tempfile::tempdir().unwrap();
        let router = RouterAlign::load(&wordpiece(dir.path()), 512).unwrap();
        let bytes = dir.path().join("bytes.json");
        crate::model::tokenizer::write_byte_tokenizer(&bytes).unwrap();
        let pathway = Tok::load(&bytes).unwrap();
        let ids = pathway.encode("Hello worlds!").unwrap();
        assert_eq!(ids.len(), 13);
        let a = router.align(&pathway, &ids).unwrap();
        // [CLS] hello world ##s !
        assert_eq!(a.router_ids, vec![2, 4, 5, 6, 7]);
        // "H e l l" see only [CLS]; "o" completes hello; " w o r l" still hello;
        // "d" completes world; "s" completes ##s; "!" completes !
        assert_eq!(a.align, vec![0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 3, 4]);
        // appending text never changes earlier alignments
        let more = pathway.encode("Hello worlds! hello").unwrap();
        let b = router.align(&pathway, &more).unwrap();
        assert_eq!(&b.align[..13], &a.align[..]);
    }

    #[test]
    fn router_tokens_beyond_the_position_table_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let router = RouterAlign::load(&wordpiece(dir.path()), 3).unwrap();
        let bytes = dir.path().join("bytes.json");
        crate::model::tokenizer::write_byte_tokenizer(&bytes).unwrap();
        let pathway = Tok::load(&bytes).unwrap();
        let ids = pathway.encode("hello world hello world").unwrap();
        let a = router.align(&pathway, &ids).unwrap();
        assert_eq!(a.router_ids.len(), 3);
        assert!(a.align.iter().all(|&j| (0..3).contains(&j)));
        assert_eq!(*a.align.last().unwrap(), 2);
    }

    #[test]
    fn a_tokenizer_without_cls_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = dir.path().join("bytes.json");
        crate::model::tokenizer::write_byte_tokenizer(&bytes).unwrap();
        let e = RouterAlign::load(&bytes, 8).err().unwrap().to_string();
        assert!(e.contains("bytes.json") && e.contains("[CLS]"), "{e}");
    }
}
