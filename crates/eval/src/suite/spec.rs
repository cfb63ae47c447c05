//! The declarative suite file (`suites/<id>.toml`): what a suite is, where its
//! data lives, how the dataset's original fields map onto an example, how the
//! prompt is built and which metrics score it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The paper's eight domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    Healthcare,
    Legal,
    Finance,
    Stem,
    Commonsense,
    Conversational,
    Multilingual,
    DomainAdaptive,
}

impl Domain {
    /// All domains in the paper's order.
    pub const ALL: [Domain; 8] = [
        Domain::Healthcare,
        Domain::Legal,
        Domain::Finance,
        Domain::Stem,
        Domain::Commonsense,
        Domain::Conversational,
        Domain::Multilingual,
        Domain::DomainAdaptive,
    ];

    /// The kebab-case name used in suite files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Healthcare => "healthcare",
            Domain::Legal => "legal",
            Domain::Finance => "finance",
            Domain::Stem => "stem",
            Domain::Commonsense => "commonsense",
            Domain::Conversational => "conversational",
            Domain::Multilingual => "multilingual",
            Domain::DomainAdaptive => "domain-adaptive",
        }
    }

    /// Parses the kebab-case name.
    pub fn parse(s: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The domain a suite file declares: one of the paper's eight, or any other
/// kebab-case name of the user's (`biomed`), reported under its own name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SuiteDomain(String);

impl SuiteDomain {
    /// The name as declared.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The paper's domain of that name, if it is one of the eight.
    pub fn paper(&self) -> Option<Domain> {
        Domain::parse(&self.0)
    }
}

impl From<Domain> for SuiteDomain {
    fn from(d: Domain) -> Self {
        SuiteDomain(d.as_str().to_string())
    }
}

impl PartialEq<Domain> for SuiteDomain {
    fn eq(&self, d: &Domain) -> bool {
        self.0 == d.as_str()
    }
}

impl std::fmt::Display for SuiteDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the model is asked to do; decides the request type and the scorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Pick one of several answer strings (loglikelihood of each choice).
    MultipleChoice,
    /// One label from a fixed set (loglikelihood of each label word).
    Classification,
    /// Any subset of a fixed label set (a yes/no loglikelihood per label).
    MultiLabelClassification,
    /// Answer is a span of the context (greedy generation, SQuAD F1/EM).
    ExtractiveQa,
    /// Free-form or numeric answer (greedy generation).
    GenerativeQa,
    /// One tag per input token, e.g. POS (generation, parsed positionally).
    TokenTagging,
    /// BIO-tagged entity spans (generation, seqeval span F1).
    Ner,
    /// (head, relation, tail) triples (generation, relation F1).
    RelationExtraction,
    /// Mention clusters (generation, MUC and B-cubed F1).
    Coreference,
    /// Document to summary (generation, ROUGE).
    Summarization,
    /// Perplexity of text (rolling loglikelihood).
    LanguageModeling,
    /// Find the translation / aligned sentence (embeddings, nearest neighbour).
    Retrieval,
    /// Next dialogue turn (generation, unigram F1).
    ResponseGeneration,
    /// Perplexity of a gold continuation given a context (loglikelihood).
    ConditionalPerplexity,
}

impl TaskKind {
    /// snake_case name, as in suite files.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::MultipleChoice => "multiple_choice",
            TaskKind::Classification => "classification",
            TaskKind::MultiLabelClassification => "multi_label_classification",
            TaskKind::ExtractiveQa => "extractive_qa",
            TaskKind::GenerativeQa => "generative_qa",
            TaskKind::TokenTagging => "token_tagging",
            TaskKind::Ner => "ner",
            TaskKind::RelationExtraction => "relation_extraction",
            TaskKind::Coreference => "coreference",
            TaskKind::Summarization => "summarization",
            TaskKind::LanguageModeling => "language_modeling",
            TaskKind::Retrieval => "retrieval",
            TaskKind::ResponseGeneration => "response_generation",
            TaskKind::ConditionalPerplexity => "conditional_perplexity",
        }
    }
}

/// A metric a suite may ask for. Each task kind accepts a subset (checked on load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction correct.
    Acc,
    /// Accuracy of the argmax of loglikelihood / choice length, the length in
    /// characters (Python `len`) of the bare choice without the target
    /// delimiter, as lm-eval's `acc_norm`.
    AccNorm,
    /// scikit-learn macro F1 (`zero_division` default): single-label over the
    /// labels present in gold or prediction, multi-label over every label
    /// column, tagging over the tag set (`labels=[labels].values`).
    F1Macro,
    /// scikit-learn micro F1, over the same labels as [`Metric::F1Macro`].
    F1Micro,
    /// SQuAD official token F1 (max over gold answers).
    SquadF1,
    /// SQuAD official exact match.
    ExactMatch,
    /// seqeval strict span F1 (micro over entity types).
    SpanF1,
    /// Token-level tagging accuracy.
    TokenAcc,
    /// Relation triple micro F1.
    RelationF1,
    /// MUC coreference F1.
    MucF1,
    /// B-cubed coreference F1.
    B3F1,
    /// ROUGE-1 F.
    Rouge1,
    /// ROUGE-2 F.
    Rouge2,
    /// ROUGE-L F (sentence-level LCS).
    RougeL,
    /// Token-level perplexity.
    Perplexity,
    /// Word-level perplexity (lm-eval `word_perplexity`).
    WordPerplexity,
    /// Bits per UTF-8 byte.
    BitsPerByte,
    /// Retrieval accuracy (nearest neighbour is the gold pair).
    RetrievalAcc,
    /// Bitext-mining F1 over mined pairs (BUCC).
    MiningF1,
    /// Numeric answer matches within tolerance (FinQA execution accuracy).
    NumericAcc,
    /// ParlAI unigram F1 (ParlAI normalisation: punctuation becomes a space).
    UnigramF1,
    /// TyDi passage-selection F1 over non-null answers.
    PassageF1,
}

impl Metric {
    /// snake_case name as used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::AccNorm => "acc_norm",
            Metric::F1Macro => "f1_macro",
            Metric::F1Micro => "f1_micro",
            Metric::SquadF1 => "squad_f1",
            Metric::ExactMatch => "exact_match",
            Metric::SpanF1 => "span_f1",
            Metric::TokenAcc => "token_acc",
            Metric::RelationF1 => "relation_f1",
            Metric::MucF1 => "muc_f1",
            Metric::B3F1 => "b3_f1",
            Metric::Rouge1 => "rouge1",
            Metric::Rouge2 => "rouge2",
            Metric::RougeL => "rouge_l",
            Metric::Perplexity => "perplexity",
            Metric::WordPerplexity => "word_perplexity",
            Metric::BitsPerByte => "bits_per_byte",
            Metric::RetrievalAcc => "retrieval_acc",
            Metric::MiningF1 => "mining_f1",
            Metric::NumericAcc => "numeric_acc",
            Metric::UnigramF1 => "unigram_f1",
            Metric::PassageF1 => "passage_f1",
        }
    }

    /// Whether larger values are better (false for perplexities and bits per byte).
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Metric::Perplexity | Metric::WordPerplexity | Metric::BitsPerByte
        )
    }
}

/// Where the data comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Folder under the data root (`--data-dir`), e.g. `commonsense-commonsenseqa`.
    pub dir: String,
    /// File name or glob (inside `dir`) of the evaluation split, e.g. `validation.jsonl`.
    pub eval: String,
    /// Optional file name or glob of the few-shot pool (a training split).
    #[serde(default)]
    pub fewshot: Option<String>,
    /// File layout: `jsonl`, `json` (array, or object with `records_path`), `csv`, `tsv`, `parquet` or `txt`.
    pub format: FileFormat,
    /// For `json` files whose records sit under a key: the dotted path to the array.
    #[serde(default)]
    pub records_path: Option<String>,
    /// `public`, or `credentialed` (bring your own data; never fetched).
    #[serde(default)]
    pub access: Access,
    /// The Hugging Face dataset this corresponds to, when one exists.
    #[serde(default)]
    pub hf: Option<HfSource>,
    /// A named adapter for layouts the field mapping cannot express; `fields` otherwise.
    #[serde(default = "default_adapter")]
    pub adapter: String,
    /// Dotted path to a list inside each record: one example per item, the
    /// record's other fields kept (see [`crate::data::explode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explode: Option<String>,
    /// Columns of a `conll` file.
    #[serde(default, skip_serializing_if = "ConllSpec::is_default")]
    pub conll: ConllSpec,
}

fn default_adapter() -> String {
    "fields".to_string()
}

/// Supported file layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Jsonl,
    Json,
    Csv,
    Tsv,
    Parquet,
    /// Plain text lines (ParlAI `.txt` dialogue files).
    Txt,
    /// CoNLL column files: one token per line, blank lines between sentences.
    Conll,
}

/// Data access policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    #[default]
    Public,
    Credentialed,
}

/// Hugging Face dataset coordinates.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfSource {
    pub dataset: String,
    #[serde(default)]
    pub config: Option<String>,
    pub split: String,
}

/// Mapping from the dataset's ORIGINAL field names to the example.
///
/// Paths are dotted (`choices.text`); `[]` maps over an array
/// (`answers[].text`). A path resolving to an array of strings is joined with
/// `join` when a single string is needed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// Path of the example id (default `id`).
    #[serde(default)]
    pub id: Option<String>,
    /// Template variables: name -> path.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Multiple choice: path to a list of strings, or several paths (one per choice).
    #[serde(default)]
    pub choices: Option<PathOrList>,
    /// How `choices` is encoded when it is a single string: `lettered` ("a ) x , b ) y").
    #[serde(default)]
    pub choices_format: Option<String>,
    /// Path of the gold answer / label / target.
    #[serde(default)]
    pub answer: Option<String>,
    /// How the gold answer is encoded: `index0`, `index1`, `letter` (a/A = 0),
    /// `text` (equals one choice), `label_of:<path>` (position in that list),
    /// `label` (a value of `[labels].values`), `texts` (list of gold strings),
    /// `number` (a number, or a text kept for the metrics to read), `spans`
    /// (a number or text is one answer, a list of strings is a set of spans
    /// that must all be given, a list of lists is alternatives of such sets).
    #[serde(default)]
    pub answer_format: Option<String>,
    /// Token list (tagging tasks).
    #[serde(default)]
    pub tokens: Option<String>,
    /// Tag list aligned with `tokens`.
    #[serde(default)]
    pub tags: Option<String>,
    /// Text for language modelling.
    #[serde(default)]
    pub text: Option<String>,
    /// Separator used to join arrays of strings (default "\n").
    #[serde(default)]
    pub join: Option<String>,
    /// Adapter-specific options (e.g. `label_field = "act"`).
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// Path of a per-record scale of the answer (`thousand`, `million`,
    /// `billion`, `percent`; empty or absent = none), read by `numeric_acc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
}

/// One path or a list of paths.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PathOrList {
    One(String),
    Many(Vec<String>),
}

/// Label set for classification, tagging and multi-label tasks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// Label values exactly as they appear in the data (as strings).
    #[serde(default)]
    pub values: Vec<String>,
    /// Verbalizer words scored by the model, aligned with `values` (default: the values).
    #[serde(default)]
    pub words: Vec<String>,
    /// Take the label set from the gold labels of the loaded split (sorted) instead.
    #[serde(default)]
    pub from_data: bool,
}

/// How requests are built from an example.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    /// Template with `{name}` placeholders from `[fields.inputs]` (and `{choices}`, `{labels}`).
    #[serde(default)]
    pub template: String,
    /// String between the prompt and each choice / label / target (lm-eval `target_delimiter`).
    #[serde(default = "default_delim")]
    pub target_delimiter: String,
    /// Separator between few-shot examples.
    #[serde(default = "default_fewshot_delim")]
    pub fewshot_delimiter: String,
    /// Stop strings for generation.
    #[serde(default = "default_stop")]
    pub stop: Vec<String>,
    /// Maximum generated tokens.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Per-label question for multi-label tasks, with `{label}`.
    #[serde(default)]
    pub label_question: Option<String>,
}

impl Default for PromptSpec {
    fn default() -> Self {
        PromptSpec {
            template: String::new(),
            target_delimiter: default_delim(),
            fewshot_delimiter: default_fewshot_delim(),
            stop: default_stop(),
            max_tokens: default_max_tokens(),
            label_question: None,
        }
    }
}

fn default_delim() -> String {
    " ".into()
}
fn default_fewshot_delim() -> String {
    "\n\n".into()
}
fn default_stop() -> Vec<String> {
    vec!["\n\n".into()]
}
fn default_max_tokens() -> usize {
    32
}

/// Few-shot settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FewShotSpec {
    /// Number of demonstrations (0 = zero-shot).
    #[serde(default)]
    pub k: usize,
    /// Seed for drawing the demonstrations.
    #[serde(default)]
    pub seed: u64,
}

/// A whole suite file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteSpec {
    /// Unique id (the file stem).
    pub id: String,
    /// The domain it is reported under: one of the paper's eight, or a name
    /// of the user's (which stays out of the paper's domain metrics).
    pub domain: SuiteDomain,
    /// Dataset name.
    pub dataset: String,
    /// Citation of the dataset.
    pub citation: String,
    /// Where the paper uses it.
    #[serde(default)]
    pub paper: Option<String>,
    /// Task kind.
    pub task: TaskKind,
    /// Metrics, the first being the suite's headline metric.
    pub metrics: Vec<Metric>,
    /// Default number of examples evaluated (0 = all).
    #[serde(default)]
    pub limit: usize,
    /// Free-text caveats shown in `suites list --verbose` and reports.
    #[serde(default)]
    pub notes: Option<String>,
    pub data: DataSpec,
    #[serde(default)]
    pub fields: FieldMap,
    #[serde(default)]
    pub labels: LabelSpec,
    #[serde(default)]
    pub prompt: PromptSpec,
    #[serde(default)]
    pub fewshot: FewShotSpec,
    /// Value maps for template placeholders `{name|map:<map>}`: `[maps.<map>]`
    /// with one `"value" = "text"` entry per value the data holds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub maps: BTreeMap<String, BTreeMap<String, String>>,
    /// The file the suite was read from (set by [`crate::suite::parse`]; named in data errors).
    #[serde(skip)]
    pub file: std::path::PathBuf,
    // Bring-your-own-dataset settings.
    /// The paper domain a suite of another domain joins in domain averages,
    /// DSI, GG and CDTR (a suite of one of the eight joins its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper_domain: Option<Domain>,
    /// A record field (dotted path) whose value splits the suite into groups
    /// scored apart beside the whole, or `file` for the source file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

impl SuiteSpec {
    /// The paper domain whose averages, DSI, GG and CDTR this suite enters:
    /// `paper_domain`, else `domain` when it is one of the eight, else none.
    pub fn paper_domain(&self) -> Option<Domain> {
        self.paper_domain.or_else(|| self.domain.paper())
    }
}

/// Which columns of a CoNLL file hold the token and the tag (`[data.conll]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConllSpec {
    /// Token column: 0-based index, negative from the end, or a header name (default 0).
    #[serde(default = "first_column")]
    pub token_column: Column,
    /// Tag column, as `token_column` (default -1, the last).
    #[serde(default = "last_column")]
    pub tag_column: Column,
    /// The first line names the columns.
    #[serde(default)]
    pub header: bool,
    /// Column separator; any run of whitespace when absent.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// Token of the lines that start a document (default `-DOCSTART-`).
    #[serde(default = "default_docstart")]
    pub docstart: String,
}

impl ConllSpec {
    fn is_default(&self) -> bool {
        *self == ConllSpec::default()
    }
}

impl Default for ConllSpec {
    fn default() -> Self {
        ConllSpec {
            token_column: first_column(),
            tag_column: last_column(),
            header: false,
            delimiter: None,
            docstart: default_docstart(),
        }
    }
}

/// A column by position (negative counts from the end) or by header name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    Index(i64),
    Name(String),
}

fn first_column() -> Column {
    Column::Index(0)
}
fn last_column() -> Column {
    Column::Index(-1)
}
fn default_docstart() -> String {
    "-DOCSTART-".into()
}
