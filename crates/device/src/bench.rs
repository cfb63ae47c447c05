//! Benchmark results as rows, as llama.cpp's `llama-bench` prints them: one
//! row per engine and test (`pp128`: a prefill of 128 tokens, `tg32`: 32
//! decode steps, `b32x128`: encoder batches of 32 sequences of 128 tokens),
//! the rate as mean ± standard deviation over the repetitions, and the
//! threads, lowering, instructions, build and CPU it was measured with.
//! Markdown, CSV and JSON lines come from this one schema.

use serde::Serialize;

/// One measured rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRow {
    /// Model name.
    pub model: String,
    /// What ran it: `edgebench`, a variant of it (`edgebench (unfused)`), or `llama.cpp`.
    pub engine: String,
    /// `pp<N>`, `tg<N>` or `b<B>x<N>`.
    pub test: String,
    /// Unit of `mean` and `sd`: `t/s` (tokens per second) or `seq/s`.
    pub unit: String,
    /// Mean rate over the repetitions.
    pub mean: f64,
    /// Sample standard deviation of the rate (`None` with one repetition or
    /// when the engine reports only a mean).
    pub sd: Option<f64>,
    /// Repetitions.
    pub n: usize,
    pub threads: usize,
    /// Lowering of quantized layers (`kernel`, `tract`, `f32`), or `-`.
    pub lowering: String,
    /// Instructions the kernels used (`avx512`, `avx2`, `portable`), or `-`.
    pub isa: String,
    /// git commit of the build that measured.
    pub commit: Option<String>,
    /// CPU model.
    pub cpu: String,
}

impl BenchRow {
    /// A row whose repetitions did `work` units (tokens, sequences) in the
    /// given `seconds` each: the rate of each repetition, then their mean ± sd.
    pub fn from_times(template: &BenchRow, test: &str, work: f64, seconds: &[f64]) -> BenchRow {
        let rates: Vec<f64> = seconds.iter().map(|s| work / s).collect();
        BenchRow {
            test: test.to_string(),
            mean: edgebench_util::stats::mean(rates.iter().copied()).unwrap_or(f64::NAN),
            sd: edgebench_util::stats::std_dev(&rates),
            n: seconds.len(),
            ..template.clone()
        }
    }

    /// `mean ± sd` as llama-bench prints it.
    pub fn rate(&self) -> String {
        match self.sd {
            Some(sd) => format!("{:.2} ± {:.2}", self.mean, sd),
            None => format!("{:.2}", self.mean),
        }
    }
}

/// An output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Md,
    Csv,
    Jsonl,
}

impl Output {
    /// Parses `md`, `csv` or `jsonl`.
    pub fn parse(name: &str) -> Option<Output> {
        match name {
            "md" => Some(Output::Md),
            "csv" => Some(Output::Csv),
            "jsonl" => Some(Output::Jsonl),
            _ => None,
        }
    }
}

const COLUMNS: [&str; 11] = [
    "model", "engine", "threads", "lowering", "isa", "test", "unit", "mean", "sd", "n", "commit",
];

/// The rows in `format`: a Markdown table (with the CPU above it), CSV with
/// a header, or one JSON object per row.
pub fn render(rows: &[BenchRow], format: Output) -> String {
    let cells = |r: &BenchRow| {
        [
            r.model.clone(),
            r.engine.clone(),
            r.threads.to_string(),
            r.lowering.clone(),
            r.isa.clone(),
            r.test.clone(),
            r.unit.clone(),
            format!("{:.4}", r.mean),
            r.sd.map_or(String::new(), |sd| format!("{sd:.4}")),
            r.n.to_string(),
            r.commit.clone().unwrap_or_default(),
        ]
    };
    match format {
        Output::Jsonl => rows
            .iter()
            .map(|r| serde_json::to_string(r).expect("rows serialise") + "\n")
            .collect(),
        Output::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let mut header = COLUMNS.to_vec();
            header.push("cpu");
            w.write_record(&header).expect("in memory");
            for r in rows {
                let mut c = cells(r).to_vec();
                c.push(r.cpu.clone());
                w.write_record(&c).expect("in memory");
            }
            String::from_utf8(w.into_inner().expect("in memory")).expect("UTF-8 cells")
        }
        Output::Md => {
            let mut cpus: Vec<&str> = rows.iter().map(|r| r.cpu.as_str()).collect();
            cpus.dedup();
            let mut s = format!("CPU: {}\n\n", cpus.join(", "));
            s += "| model | engine | threads | lowering | isa | test | rate | commit |\n";
            s += "|---|---|---:|---|---|---|---:|---|\n";
            for r in rows {
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} {} | {} |\n",
                    r.model,
                    r.engine,
                    r.threads,
                    r.lowering,
                    r.isa,
                    r.test,
                    r.rate(),
                    r.unit,
                    r.commit.as_deref().unwrap_or("")
                );
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> BenchRow {
        BenchRow {
            model: "m".into(),
            engine: "edgebench".into(),
            test: String::new(),
            unit: "t/s".into(),
            mean: 0.0,
            sd: None,
            n: 0,
            threads: 2,
            lowering: "kernel".into(),
            isa: "avx2".into(),
            commit: Some("abc".into()),
            cpu: "Test CPU".into(),
        }
    }

    #[test]
    fn rates_are_mean_and_sample_sd_of_each_repetition() {
        // 128 tokens in 0.5, 0.25 and 0.4 s: 256, 512 and 320 t/s;
        // python3 -c "import statistics as s; v=[256,512,320]; print(s.mean(v), s.stdev(v))"
        let r = BenchRow::from_times(&template(), "pp128", 128.0, &[0.5, 0.25, 0.4]);
        assert_eq!((r.test.as_str(), r.n), ("pp128", 3));
        assert!((r.mean - 362.666_666_666_666_7).abs() < 1e-9);
        assert!((r.sd.unwrap() - 133.226_623_965_832_5).abs() < 1e-9);
        assert_eq!(r.rate(), "362.67 ± 133.23");
        let one = BenchRow::from_times(&template(), "tg8", 8.0, &[0.5]);
        assert_eq!((one.mean, one.sd), (16.0, None));
    }

    #[test]
    fn one_schema_three_formats() {
        let rows = vec![BenchRow::from_times(&template(), "pp4", 4.0, &[1.0, 0.5])];
        let md = render(&rows, Output::Md);
        assert!(md.starts_with("CPU: Test CPU\n"), "{md}");
        assert!(
            md.contains("| m | edgebench | 2 | kernel | avx2 | pp4 | 6.00 ± 2.83 t/s | abc |"),
            "{md}"
        );
        let csv = render(&rows, Output::Csv);
        assert_eq!(
            csv.lines().next().unwrap(),
            "model,engine,threads,lowering,isa,test,unit,mean,sd,n,commit,cpu"
        );
        assert!(
            csv.contains("m,edgebench,2,kernel,avx2,pp4,t/s,6.0000,2.8284,2,abc,Test CPU"),
            "{csv}"
        );
        let v: serde_json::Value =
            serde_json::from_str(render(&rows, Output::Jsonl).trim()).unwrap();
        assert_eq!(
            (v["test"].as_str(), v["mean"].as_f64()),
            (Some("pp4"), Some(6.0))
        );
        assert_eq!(Output::parse("tsv"), None);
    }
}
