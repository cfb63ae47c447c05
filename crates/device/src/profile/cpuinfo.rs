//! Naming the CPU from `/proc/cpuinfo`, decoding Arm part numbers.

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Default)]
pub(super) struct CpuInfo {
    pub(super) processors: u32,
    model_name: Option<String>,
    /// Old 32-bit ARM kernels: `Processor : ARMv7 Processor rev 4 (v7l)`.
    legacy_processor: Option<String>,
    /// (implementer, part) per processor, aarch64 style.
    parts: Vec<(Option<u32>, u32)>,
    pub(super) hardware: Option<String>,
    pub(super) board: Option<String>,
}

fn parse_hex(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u32::from_str_radix(digits, 16).ok()
}

impl CpuInfo {
    pub(super) fn parse(text: &str) -> CpuInfo {
        let mut info = CpuInfo::default();
        let mut implementer = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "processor" if value.parse::<u32>().is_ok() => {
                    info.processors += 1;
                    implementer = None;
                }
                "Processor" if !value.is_empty() => {
                    info.legacy_processor
                        .get_or_insert_with(|| value.to_string());
                }
                "model name" if !value.is_empty() => {
                    info.model_name.get_or_insert_with(|| value.to_string());
                }
                "CPU implementer" => implementer = parse_hex(value),
                "CPU part" => {
                    if let Some(part) = parse_hex(value) {
                        info.parts.push((implementer, part));
                    }
                }
                "Hardware" if !value.is_empty() => info.hardware = Some(value.to_string()),
                "Model" if !value.is_empty() => info.board = Some(value.to_string()),
                _ => {}
            }
        }
        info
    }

    /// Decoded cores (`4x Cortex-A72`) when every part is known, else the
    /// `model name`, else raw part ids, else the legacy `Processor` line.
    pub(super) fn model(&self) -> Option<String> {
        let mut groups: Vec<(String, bool, u32)> = Vec::new();
        for (imp, part) in &self.parts {
            let (name, known) = arm_part_name(*imp, *part);
            match groups.iter_mut().find(|g| g.0 == name) {
                Some(g) => g.2 += 1,
                None => groups.push((name, known, 1)),
            }
        }
        let describe = || {
            groups
                .iter()
                .map(|(n, _, c)| format!("{c}x {n}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        if !groups.is_empty() && groups.iter().all(|g| g.1) {
            return Some(describe());
        }
        if let Some(m) = &self.model_name {
            return Some(m.clone());
        }
        if !groups.is_empty() {
            return Some(describe());
        }
        self.legacy_processor.clone()
    }
}

/// Name of an Arm CPU from its MIDR implementer and part number (values from
/// the Arm technical reference manuals, as listed in Linux's
/// `arch/arm64/include/asm/cputype.h`). The bool says whether it was known.
fn arm_part_name(implementer: Option<u32>, part: u32) -> (String, bool) {
    if implementer.is_none_or(|i| i == 0x41) {
        let name = match part {
            0xd03 => Some("Cortex-A53"),
            0xd04 => Some("Cortex-A35"),
            0xd05 => Some("Cortex-A55"),
            0xd07 => Some("Cortex-A57"),
            0xd08 => Some("Cortex-A72"),
            0xd09 => Some("Cortex-A73"),
            0xd0a => Some("Cortex-A75"),
            0xd0b => Some("Cortex-A76"),
            0xd0c => Some("Neoverse-N1"),
            0xd0d => Some("Cortex-A77"),
            0xd40 => Some("Neoverse-V1"),
            0xd41 => Some("Cortex-A78"),
            0xd44 => Some("Cortex-X1"),
            0xd46 => Some("Cortex-A510"),
            0xd47 => Some("Cortex-A710"),
            0xd48 => Some("Cortex-X2"),
            0xd49 => Some("Neoverse-N2"),
            0xd4f => Some("Neoverse-V2"),
            _ => None,
        };
        if let Some(n) = name {
            return (n.to_string(), true);
        }
    }
    let imp = implementer
        .map(|i| format!("implementer 0x{i:02x} "))
        .unwrap_or_default();
    (format!("Arm CPU ({imp}part 0x{part:03x})"), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_aarch64_big_little_is_decoded() {
        let mut text = String::new();
        for (i, part) in ["0xd05", "0xd05", "0xd0b", "0xd44"].iter().enumerate() {
            text.push_str(&format!(
                "processor\t: {i}\nBogoMIPS\t: 49.15\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
            ));
        }
        let info = CpuInfo::parse(&text);
        assert_eq!(info.processors, 4);
        assert_eq!(
            info.model().as_deref(),
            Some("2x Cortex-A55 + 1x Cortex-A76 + 1x Cortex-X1")
        );
        let info = CpuInfo::parse("processor : 0\nCPU implementer : 0x51\nCPU part : 0x804\n");
        assert_eq!(
            info.model().as_deref(),
            Some("1x Arm CPU (implementer 0x51 part 0x804)")
        );
        let info = CpuInfo::parse("Processor : ARMv7 Processor rev 4 (v7l)\nprocessor : 0\n");
        assert_eq!(info.model().as_deref(), Some("ARMv7 Processor rev 4 (v7l)"));
        assert_eq!(CpuInfo::parse("garbage\n\n:::").model(), None);
    }
}
