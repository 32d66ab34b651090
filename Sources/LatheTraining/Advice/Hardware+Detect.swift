import Foundation
import LatheTensors

extension Hardware {
    /// The CPU features `lathe advise` reports: AVX-512, its bf16 dot products, and AMX's bf16 tiles.
    public static let reportedFlags = ["avx512f", "avx512_bf16", "amx_bf16"]

    /// This machine: RAM from /proc/meminfo (the run may use what is available now), cores, the CPU's flags and
    /// bf16 products. `flopsPerSecond` is left to the caller (a brief matmul measurement).
    public static func detect(meminfo: String, cpuinfo: String, cores: Int, bf16: BF16Products) throws -> Hardware {
        func kilobytes(_ key: String) -> Int? {
            for line in meminfo.split(separator: "\n") where line.hasPrefix(key + ":") {
                let fields = line.dropFirst(key.count + 1).split(separator: " ")
                if let value = fields.first.flatMap({ Int($0) }) { return value * 1024 }
            }
            return nil
        }
        guard let total = kilobytes("MemTotal") else {
            throw AdviceError(field: "/proc/meminfo", problem: "no MemTotal line: state the memory with --cpu-memory 32GB")
        }
        let flagLine = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") }
        let flags = Set(flagLine.map { $0.split(separator: ":").dropFirst().joined().split(separator: " ").map(String.init) } ?? [])
        return Hardware(device: .cpu, memoryBytes: total, availableBytes: kilobytes("MemAvailable") ?? total,
                        memorySource: "/proc/meminfo (MemAvailable of MemTotal)", cores: cores,
                        cpuFlags: reportedFlags.filter(flags.contains), bf16: bf16)
    }

    /// Reads a size as `--gpu-memory 24GB` states it: a number and B, KB, MB, GB or TB (binary multiples, as memory
    /// is sold: a "24 GB" GPU has 24 GiB), or KiB … TiB; a bare number is GB.
    public static func parseSize(_ text: String, flag: String) throws -> Int {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let number = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(number.count).trimmingCharacters(in: .whitespaces).uppercased()
        let powers: [String: Double] = ["B": 0, "K": 1, "KB": 1, "KIB": 1, "M": 2, "MB": 2, "MIB": 2, "": 3, "G": 3, "GB": 3, "GIB": 3,
                                        "T": 4, "TB": 4, "TIB": 4]
        guard let value = Double(number), value > 0, let power = powers[unit] else {
            throw AdviceError(field: flag, problem: "'\(text)' is not a memory size (e.g. 24GB, 512MB, 1.5TB)")
        }
        return Int(value * pow(1024, power))
    }
}
