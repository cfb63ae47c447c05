//! Aligns two tokenizations of the same text: GEM assembled from public
//! checkpoints routes the tokens of its pathway tokenizer (byte-level BPE)
//! with a router that reads another tokenizer's tokens (WordPiece).
//!
//! The router sees `[CLS]` followed by the router tokens of the text the
//! pathway tokens decode to. Pathway token `i`, whose text ends at character
//! `e_i`, takes the router row of the last router token whose word ends
//! before `e_i` (`[CLS]`, row 0, when none does): a word's router tokens are
//! final only once a character follows it (`th` and `the` split
//! differently), so the word being typed is not used yet. With a causal
//! router, no route depends on any character after its own token: the
//! routes of a prefix never change when text is appended, loglikelihoods
//! stay well defined, and decoding with a cache routes each new token as a
//! full recomputation would.

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
        Ok(self.align_after(pathway, ids, &[])?.0)
    }

    /// [`Self::align`] when the character ends of the first tokens are known
    /// (`known`, as returned before for a prefix of `ids`): only the new
    /// tokens' prefixes are decoded, so a decode step costs one pass over the
    /// text. Returns the alignment of all of `ids` and every token's end.
    pub fn align_after(
        &self,
        pathway: &Tok,
        ids: &[u32],
        known: &[usize],
    ) -> Result<(Aligned, Vec<usize>), ModelError> {
        // character end of each pathway token: length of the decoded prefix
        let known = &known[..known.len().min(ids.len())];
        let mut ends = Vec::with_capacity(ids.len());
        ends.extend_from_slice(known);
        let mut last = known.last().copied().unwrap_or(0);
        for i in known.len()..ids.len() {
            let n = pathway.decode(&ids[..=i])?.chars().count();
            last = last.max(n);
            ends.push(last);
        }
        let text = pathway.decode(ids)?;
        let (rids, offsets, words) = self.tok.encode_with_words(&text)?;
        let keep = rids.len().min(self.max_tokens - 1);
        let mut router_ids = Vec::with_capacity(keep + 1);
        router_ids.push(self.cls as i64);
        router_ids.extend(rids[..keep].iter().map(|&i| i as i64));
        // where the word of each router token ends: a word's pieces are
        // final once a character follows it (a longer word splits otherwise)
        let mut word_end: Vec<usize> = offsets.iter().map(|o| o.1).collect();
        for j in (0..word_end.len().saturating_sub(1)).rev() {
            if words[j].is_some() && words[j] == words[j + 1] {
                word_end[j] = word_end[j + 1];
            }
        }
        // router tokens (after CLS) whose word ends before each end; those ascend
        let align = ends
            .iter()
            .map(|&e| word_end[..keep].partition_point(|&w| w < e) as i64)
            .collect();
        Ok((Aligned { router_ids, align }, ends))
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
    fn pathway_tokens_take_the_last_router_token_whose_word_ended_before_them() {
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
        // "H e l l o" see only [CLS] (the word may go on); the space after
        // it makes hello final; "worlds" is final once "!" follows, and "!"
        // only after a later character (none here)
        assert_eq!(a.align, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 3]);
        // appending text never changes earlier alignments, even mid-word
        // ("hel" alone is [UNK], in "hello" it is part of hello)
        for more in ["Hello worlds! hello", "Hello worlds!!", "Hel"] {
            let ids_more = pathway.encode(more).unwrap();
            let b = router.align(&pathway, &ids_more).unwrap();
            let n = ids_more.len().min(ids.len());
            if more.starts_with("Hello") {
                assert_eq!(&b.align[..n], &a.align[..n], "{more}");
            } else {
                assert_eq!(b.align, vec![0, 0, 0], "{more}");
            }
        }
        // the incremental form gives the same alignment
        let (half, ends) = router.align_after(&pathway, &ids[..6], &[]).unwrap();
        assert_eq!(half.align, &a.align[..6]);
        let (c, _) = router.align_after(&pathway, &ids, &ends).unwrap();
        assert_eq!(c, a);
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
