//! The run's report: markdown lines, printed as they come and written to
//! `bench-results/latest.md`, and a chart of the figures, `bench-results/latest.svg`.

use switchboard::cli::chart::{Bar, Chart};

use crate::cpu::CpuPerEvents;

const DIRECTORY: &str = "bench-results";

pub struct Report {
    lines: Vec<String>,
    chart: Chart,
    /// The Redis CPU per creation of the worker's median drain in part (o), µs, once (o) has
    /// run: part (i), run after it, turns its instruction count into this host's pace with it.
    pub drain_redis_us: Option<f64>,
}

impl Report {
    pub fn new(machine: &str, events: usize) -> Report {
        let mut report = Report {
            lines: vec![],
            chart: Chart::new(format!("Switchboard benchmark: {machine}")),
            drain_redis_us: None,
        };
        report.line(format!("# Switchboard benchmark\n\nmachine: {machine}; RabbitMQ and Redis on loopback; {events} mixed events per drain\n"));
        report
    }

    /// Prints a line and keeps it for the file.
    pub fn line(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("{text}");
        self.lines.push(text);
    }

    /// A panel of the chart: labelled values in `unit`.
    pub fn bars<L: Into<String>>(
        &mut self,
        title: &str,
        unit: &str,
        bars: impl IntoIterator<Item = (L, f64)>,
    ) {
        let bars = bars
            .into_iter()
            .map(|(label, value)| Bar::new(label, value))
            .collect();
        self.chart.bars(title, unit, bars);
    }

    /// Writes the markdown and the chart.
    pub fn write(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(DIRECTORY)?;
        std::fs::write(
            format!("{DIRECTORY}/latest.md"),
            self.lines.join("\n") + "\n",
        )?;
        std::fs::write(format!("{DIRECTORY}/latest.svg"), self.chart.svg())?;
        println!("\nwritten to {DIRECTORY}/latest.md and {DIRECTORY}/latest.svg");
        Ok(())
    }
}

/// The run with the median rate.
pub fn median_run(runs: &[(f64, CpuPerEvents)]) -> (f64, CpuPerEvents) {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted[sorted.len() / 2]
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
