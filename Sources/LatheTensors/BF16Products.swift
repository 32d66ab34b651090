import Foundation
#if canImport(CLatheDNNL)
import CLatheDNNL
#endif

/// How this CPU multiplies bf16 matrices, as oneDNN sees it (so `ONEDNN_MAX_CPU_ISA` caps it), and whether that
/// is faster than float32 — the one fact behind `--dtype auto` and behind which product a bf16 weight runs.
///
/// Measured on this project's machines (../shared/MACHINE-NOTES.md, README): AMX runs bf16 at 4–5× float32;
/// AVX512-BF16 on AMD Zen 4 runs `VDPBF16PS` at twice float32's FMA rate (a LoRA step 1.6× faster); Intel's
/// AVX512-BF16 without AMX has float32's peak and measures at half of it in oneDNN; without bf16 instructions
/// oneDNN widens bf16 to float32, slower still.
public struct BF16Products: Sendable, Equatable, CustomStringConvertible {
    public enum Instructions: String, Sendable {
        case amx = "amx"
        case avx512BF16 = "avx512_bf16"
        /// No bf16 instructions (or no oneDNN): bf16 is widened to float32.
        case none = "none"
    }
    public let instructions: Instructions
    /// The CPU's vendor string (`vendor_id` of /proc/cpuinfo), "" where unknown.
    public let vendor: String

    public init(instructions: Instructions, vendor: String) {
        self.instructions = instructions
        self.vendor = vendor
    }

    /// True where oneDNN's bf16 matmul beats its float32 one: AMX, and AVX512-BF16 on AMD.
    public var beatFloat32: Bool {
        switch instructions {
        case .amx: return true
        case .avx512BF16: return vendor == "AuthenticAMD"
        case .none: return false
        }
    }

    /// E.g. "avx512_bf16 (AuthenticAMD): faster than float32".
    public var description: String {
        "\(instructions.rawValue)\(vendor.isEmpty ? "" : " (\(vendor))"): "
            + (beatFloat32 ? "faster than float32" : "not faster than float32")
    }

    /// This process's CPU, read once.
    public static let current = BF16Products(instructions: currentInstructions, vendor: currentVendor)

    /// Whether oneDNN has a bf16 matmul here at all: native (AMX, AVX512-BF16) or emulated with AVX-512. Below
    /// AVX-512 (an AVX2-only CPU) it has none, and bf16 weights are always widened to float32 products.
    public static let oneDNNHasBF16Matmul: Bool = {
        #if canImport(CLatheDNNL)
        let isa = dnnl_get_effective_cpu_isa().rawValue, core = dnnl_cpu_isa_avx512_core.rawValue
        return isa & core == core
        #else
        return false
        #endif
    }()

    private static var currentInstructions: Instructions {
        #if canImport(CLatheDNNL)
        // Each ISA value holds the bits of the ISAs it extends: AMX's value contains AVX512-BF16's.
        let isa = dnnl_get_effective_cpu_isa().rawValue
        let amx = dnnl_cpu_isa_avx512_core_amx.rawValue, bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        if isa & amx == amx { return .amx }
        if isa & bf16 == bf16 { return .avx512BF16 }
        #endif
        return .none
    }

    private static var currentVendor: String {
        guard let cpuInfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = cpuInfo.split(separator: "\n").first(where: { $0.hasPrefix("vendor_id") }),
              let colon = line.firstIndex(of: ":") else { return "" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
