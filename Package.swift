// swift-tools-version:6.0
import PackageDescription

// Swift SIMD code lowers to scalar libm calls without a target CPU (../shared/MACHINE-NOTES.md):
// every target that holds kernels is built for the host CPU on Linux.
let nativeCPU: [SwiftSetting] = [
    // -fno-math-errno lets the SIMD square root be one instruction instead of 16 libm calls.
    .unsafeFlags(["-Xcc", "-march=native", "-Xcc", "-fno-math-errno"], .when(platforms: [.linux])),
    .unsafeFlags(["-Ounchecked"], .when(platforms: [.linux], configuration: .release)),
]

// The block decoders and their dot products (LatheFormats) are optimized in debug builds too: unoptimized, their
// generic SIMD code runs some 100× slower, and `swift test` decodes the real model through them.
let optimizedKernels: [SwiftSetting] = nativeCPU + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "Lathe",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lathe", targets: ["lathe"]),
        .library(name: "LatheModels", targets: ["LatheModels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    ],
    targets: [
        // OpenBLAS on Linux; on macOS the tensors module uses Accelerate instead and this shim is empty.
        .systemLibrary(
            name: "CLatheBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // oneDNN (Linux): the default float32 matmul backend, and the bf16/AMX path to come.
        .systemLibrary(name: "CLatheDNNL", providers: [.apt(["libdnnl-dev"])]),
        .target(name: "LatheTensors",
                dependencies: [.target(name: "CLatheBLAS", condition: .when(platforms: [.linux])),
                               .target(name: "CLatheDNNL", condition: .when(platforms: [.linux]))],
                swiftSettings: nativeCPU),
        // The block weights' dot products with int8 activations (AVX512-VNNI), in C: Swift cannot emit vpdpbusd.
        // Optimized in debug builds too, for the reason `optimizedKernels` gives.
        .target(name: "CLatheBlockDots",
                cSettings: [.unsafeFlags(["-O3"]),
                            .unsafeFlags(["-march=native", "-fno-math-errno"], .when(platforms: [.linux]))]),
        // Formats keep GGUF tensors in their own blocks as compact weights of the tensors module.
        .target(name: "LatheFormats", dependencies: ["LatheTensors", "CLatheBlockDots"], swiftSettings: optimizedKernels),
        .target(name: "LatheTokenizers", swiftSettings: nativeCPU),
        .target(name: "LatheTemplates", swiftSettings: nativeCPU),
        .target(name: "LatheModels",
                dependencies: ["LatheTensors", "LatheFormats", "LatheTokenizers", "LatheTemplates"],
                swiftSettings: nativeCPU),
        .target(name: "LatheData", dependencies: ["LatheModels", "LatheTensors", "LatheRemote"], swiftSettings: nativeCPU),
        .target(name: "LatheTraining", dependencies: ["LatheModels", "LatheData", "LatheEval", "LatheFormats", "LatheTensors", .product(name: "Yams", package: "Yams")],
                swiftSettings: nativeCPU),
        // A client for OpenAI-compatible chat-completion endpoints (LLM-as-judge, synthetic data).
        .target(name: "LatheRemote", swiftSettings: nativeCPU),
        .target(name: "LatheEval", dependencies: ["LatheModels", "LatheData", "LatheRemote"], swiftSettings: nativeCPU),
        // `lathe serve`: the OpenAI-compatible HTTP server over the batch decoder.
        .target(name: "LatheServe",
                dependencies: ["LatheModels", .product(name: "Hummingbird", package: "hummingbird")],
                swiftSettings: nativeCPU),
        .target(name: "LatheCLI",
                dependencies: ["LatheModels", "LatheData", "LatheTraining", "LatheEval", "LatheServe",
                               .product(name: "ArgumentParser", package: "swift-argument-parser")],
                swiftSettings: nativeCPU),
        .executableTarget(name: "lathe", dependencies: ["LatheCLI"], swiftSettings: nativeCPU),

        // Builders of small models and data for the tests of every module.
        .target(name: "LatheTestSupport", dependencies: ["LatheFormats", "LatheTensors", "LatheTokenizers", "LatheModels"],
                path: "Tests/LatheTestSupport", swiftSettings: nativeCPU),

        .testTarget(name: "LatheTensorsTests", dependencies: ["LatheTensors", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheFormatsTests", dependencies: ["LatheFormats", "LatheTensors", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheTokenizersTests", dependencies: ["LatheTokenizers", "LatheFormats", "LatheModels", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheTemplatesTests", dependencies: ["LatheTemplates"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheModelsTests", dependencies: ["LatheModels", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheDataTests", dependencies: ["LatheData", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheTrainingTests", dependencies: ["LatheTraining", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheEvalTests", dependencies: ["LatheEval", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheRemoteTests", dependencies: ["LatheRemote", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheServeTests", dependencies: ["LatheServe", "LatheTensors", "LatheTestSupport"], swiftSettings: nativeCPU),
        .testTarget(name: "LatheCLITests", dependencies: ["LatheCLI", "LatheTestSupport"], swiftSettings: nativeCPU),
    ],
    swiftLanguageModes: [.v5]
)
