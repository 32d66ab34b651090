#if canImport(CLatheDNNL)
import CLatheDNNL

/// Matrix products with a bf16 weight through oneDNN's matmul primitive: bf16 in, float32 out, float32
/// accumulation. oneDNN picks AMX or AVX512-BF16 kernels when the CPU has them and emulates bf16 on plain AVX-512
/// otherwise; whether that beats float32 depends on the CPU (`BF16Products`).
///
/// The two products a linear layer with weight W [out, in] needs:
/// - forward, `multiplyByTransposedWeight`: C[m, n] = A[m, k] · Wᵀ with W a `BF16Matrix` [n, k];
/// - input gradient, `multiplyByWeight`: C[m, k] = A[m, n] · W with W [n, k].
/// A float32 left operand is rounded to bf16 (ties to even) into a scratch buffer reused across calls.
///
/// Building a primitive costs far more than running a small one, so each (shape, form, accumulate) gets one
/// primitive, built on first use and kept. An instance holds mutable caches: use it from one thread at a time.
public final class OneDNNBF16Matmul {
    /// Failures of oneDNN calls, with the shape they were for.
    public struct Failure: Error, CustomStringConvertible {
        public let operation: String
        public let status: Int
        public let shape: String
        public var description: String { "oneDNN \(operation) failed with status \(status) for \(shape)" }
    }

    private struct PrimitiveKey: Hashable {
        let m: Int, n: Int, k: Int
        let transposedWeight: Bool
        let accumulate: Bool
    }

    /// One primitive and the memory objects it runs on; their data handles are set on each call.
    private final class CachedPrimitive {
        let primitive: dnnl_primitive_t
        let source: dnnl_memory_t
        let weights: dnnl_memory_t
        let destination: dnnl_memory_t
        init(primitive: dnnl_primitive_t, source: dnnl_memory_t, weights: dnnl_memory_t, destination: dnnl_memory_t) {
            self.primitive = primitive
            self.source = source
            self.weights = weights
            self.destination = destination
        }
        deinit {
            dnnl_primitive_destroy(primitive)
            dnnl_memory_destroy(source)
            dnnl_memory_destroy(weights)
            dnnl_memory_destroy(destination)
        }
    }

    private let engine: dnnl_engine_t
    private let stream: dnnl_stream_t
    private var primitives: [PrimitiveKey: CachedPrimitive] = [:]
    private var scratch: UnsafeMutablePointer<UInt16>
    private var scratchCapacity: Int

    /// How many primitives have been built (one per distinct shape, form and accumulate flag).
    public var cachedPrimitiveCount: Int { primitives.count }

    /// Creates oneDNN's CPU engine and a stream, once for the instance's life.
    public init() throws {
        var engine: dnnl_engine_t?
        try Self.check(dnnl_engine_create(&engine, dnnl_cpu, 0), "dnnl_engine_create", shape: "cpu engine")
        guard let engine else { throw Failure(operation: "dnnl_engine_create", status: -1, shape: "cpu engine") }
        var stream: dnnl_stream_t?
        let streamStatus = dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue))
        guard streamStatus == dnnl_success, let stream else {
            dnnl_engine_destroy(engine)
            throw Failure(operation: "dnnl_stream_create", status: Int(streamStatus.rawValue), shape: "cpu stream")
        }
        self.engine = engine
        self.stream = stream
        scratchCapacity = 1
        scratch = Self.allocateBF16(count: scratchCapacity)
    }

    deinit {
        primitives.removeAll()
        UnsafeMutableRawPointer(scratch).deallocate()
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    // MARK: - Forward: C[m, n] = A[m, k] · Wᵀ

    /// C[m, n] = A[m, k] · Wᵀ (+ C when `accumulate`), with W = `weight` [n, k]; A is rounded to bf16.
    public func multiplyByTransposedWeight(_ input: UnsafePointer<Float>, rows m: Int, weight: BF16Matrix,
                                           into output: UnsafeMutablePointer<Float>, accumulate: Bool = false) throws {
        let roundedInput = roundToScratch(input, count: m * weight.columns)
        try multiplyByTransposedWeight(bf16: roundedInput, rows: m, weight: weight, into: output, accumulate: accumulate)
    }

    /// C[m, n] = A[m, k] · Wᵀ (+ C when `accumulate`), with A given as bf16 bits and W = `weight` [n, k].
    public func multiplyByTransposedWeight(bf16 input: UnsafePointer<UInt16>, rows m: Int, weight: BF16Matrix,
                                           into output: UnsafeMutablePointer<Float>, accumulate: Bool = false) throws {
        let key = PrimitiveKey(m: m, n: weight.rows, k: weight.columns, transposedWeight: true, accumulate: accumulate)
        try run(key, input: input, weight: weight, output: output)
    }

    // MARK: - Input gradient: C[m, k] = A[m, n] · W

    /// C[m, k] = A[m, n] · W (+ C when `accumulate`), with W = `weight` [n, k]; A is rounded to bf16.
    public func multiplyByWeight(_ input: UnsafePointer<Float>, rows m: Int, weight: BF16Matrix,
                                 into output: UnsafeMutablePointer<Float>, accumulate: Bool = false) throws {
        let roundedInput = roundToScratch(input, count: m * weight.rows)
        try multiplyByWeight(bf16: roundedInput, rows: m, weight: weight, into: output, accumulate: accumulate)
    }

    /// C[m, k] = A[m, n] · W (+ C when `accumulate`), with A given as bf16 bits and W = `weight` [n, k].
    public func multiplyByWeight(bf16 input: UnsafePointer<UInt16>, rows m: Int, weight: BF16Matrix,
                                 into output: UnsafeMutablePointer<Float>, accumulate: Bool = false) throws {
        // In matmul terms the reduced dimension is the weight's rows and the output width its columns.
        let key = PrimitiveKey(m: m, n: weight.columns, k: weight.rows, transposedWeight: false, accumulate: accumulate)
        try run(key, input: input, weight: weight, output: output)
    }

    // MARK: - Internals

    private func run(_ key: PrimitiveKey, input: UnsafePointer<UInt16>, weight: BF16Matrix,
                     output: UnsafeMutablePointer<Float>) throws {
        // An empty product is all zeros (or C unchanged); oneDNN rejects some zero-sized shapes.
        if key.m == 0 || key.n == 0 { return }
        if key.k == 0 {
            if !key.accumulate { output.update(repeating: 0, count: key.m * key.n) }
            return
        }
        OneDNNBackend.useThreads(for: key.m * key.n * key.k)
        let cached = try primitive(for: key)
        let shape = Self.describe(key)
        try Self.check(dnnl_memory_set_data_handle(cached.source, UnsafeMutableRawPointer(mutating: input)),
                       "dnnl_memory_set_data_handle", shape: shape)
        try Self.check(dnnl_memory_set_data_handle(cached.weights, UnsafeMutableRawPointer(mutating: weight.bits)),
                       "dnnl_memory_set_data_handle", shape: shape)
        try Self.check(dnnl_memory_set_data_handle(cached.destination, UnsafeMutableRawPointer(output)),
                       "dnnl_memory_set_data_handle", shape: shape)
        let arguments = [
            dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: cached.source),
            dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: cached.weights),
            dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: cached.destination),
        ]
        try Self.check(dnnl_primitive_execute(cached.primitive, stream, Int32(arguments.count), arguments),
                       "dnnl_primitive_execute", shape: shape)
        try Self.check(dnnl_stream_wait(stream), "dnnl_stream_wait", shape: shape)
    }

    private func primitive(for key: PrimitiveKey) throws -> CachedPrimitive {
        if let cached = primitives[key] { return cached }
        let shape = Self.describe(key)
        var sourceDescriptor = dnnl_memory_desc_t()
        var weightsDescriptor = dnnl_memory_desc_t()
        var destinationDescriptor = dnnl_memory_desc_t()
        var sourceDims = Self.dims(key.m, key.k)
        var weightsDims = Self.dims(key.k, key.n)
        var destinationDims = Self.dims(key.m, key.n)
        try Self.withDims(&sourceDims) {
            try Self.check(dnnl_memory_desc_init_by_tag(&sourceDescriptor, 2, $0, dnnl_bf16, dnnl_ab),
                           "dnnl_memory_desc_init_by_tag (source)", shape: shape)
        }
        // The weight is stored [n, k] row-major for the forward form: as the [k, n] operand that is layout "ba".
        try Self.withDims(&weightsDims) {
            try Self.check(dnnl_memory_desc_init_by_tag(&weightsDescriptor, 2, $0, dnnl_bf16,
                                                        key.transposedWeight ? dnnl_ba : dnnl_ab),
                           "dnnl_memory_desc_init_by_tag (weights)", shape: shape)
        }
        try Self.withDims(&destinationDims) {
            try Self.check(dnnl_memory_desc_init_by_tag(&destinationDescriptor, 2, $0, dnnl_f32, dnnl_ab),
                           "dnnl_memory_desc_init_by_tag (destination)", shape: shape)
        }
        var operation = dnnl_matmul_desc_t()
        try Self.check(dnnl_matmul_desc_init(&operation, &sourceDescriptor, &weightsDescriptor, nil, &destinationDescriptor),
                       "dnnl_matmul_desc_init", shape: shape)

        var attributes: dnnl_primitive_attr_t?
        try Self.check(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create", shape: shape)
        defer { dnnl_primitive_attr_destroy(attributes) }
        if key.accumulate {
            // A sum post-op adds the destination's previous values: BLAS's beta = 1.
            var postOps: dnnl_post_ops_t?
            try Self.check(dnnl_post_ops_create(&postOps), "dnnl_post_ops_create", shape: shape)
            defer { dnnl_post_ops_destroy(postOps) }
            try Self.check(dnnl_post_ops_append_sum(postOps, 1), "dnnl_post_ops_append_sum", shape: shape)
            try Self.check(dnnl_primitive_attr_set_post_ops(attributes, postOps), "dnnl_primitive_attr_set_post_ops", shape: shape)
        }

        var descriptor: dnnl_primitive_desc_t?
        try Self.check(dnnl_primitive_desc_create(&descriptor, &operation, attributes, engine, nil),
                       "dnnl_primitive_desc_create", shape: shape)
        defer { dnnl_primitive_desc_destroy(descriptor) }
        var primitive: dnnl_primitive_t?
        try Self.check(dnnl_primitive_create(&primitive, descriptor), "dnnl_primitive_create", shape: shape)
        guard let primitive else { throw Failure(operation: "dnnl_primitive_create", status: -1, shape: shape) }

        // Memory objects without a buffer (DNNL_MEMORY_NONE): each call points them at its operands.
        var memories: [dnnl_memory_t] = []
        var failure: Error?
        for descriptor in [sourceDescriptor, weightsDescriptor, destinationDescriptor] {
            var descriptorCopy = descriptor
            var memory: dnnl_memory_t?
            let status = dnnl_memory_create(&memory, &descriptorCopy, engine, nil)
            guard status == dnnl_success, let memory else {
                failure = Failure(operation: "dnnl_memory_create", status: Int(status.rawValue), shape: shape)
                break
            }
            memories.append(memory)
        }
        if let failure {
            memories.forEach { dnnl_memory_destroy($0) }
            dnnl_primitive_destroy(primitive)
            throw failure
        }
        let cached = CachedPrimitive(primitive: primitive, source: memories[0], weights: memories[1], destination: memories[2])
        primitives[key] = cached
        return cached
    }

    /// Rounds `count` floats to bf16 into the scratch buffer, grown (64-byte aligned) when too small.
    private func roundToScratch(_ source: UnsafePointer<Float>, count: Int) -> UnsafePointer<UInt16> {
        if count > scratchCapacity {
            UnsafeMutableRawPointer(scratch).deallocate()
            scratch = Self.allocateBF16(count: count)
            scratchCapacity = count
        }
        BF16.convert(source, to: scratch, count: count)
        return UnsafePointer(scratch)
    }

    private static func allocateBF16(count: Int) -> UnsafeMutablePointer<UInt16> {
        UnsafeMutableRawPointer.allocate(byteCount: count * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: count)
    }

    private static func dims(_ first: Int, _ second: Int) -> dnnl_dims_t {
        var dims = dnnl_dims_t(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        dims.0 = Int64(first)
        dims.1 = Int64(second)
        return dims
    }

    /// dnnl_dims_t imports as a tuple: oneDNN reads the whole 12-element array through a pointer to it.
    private static func withDims(_ dims: inout dnnl_dims_t, _ body: (UnsafePointer<Int64>) throws -> Void) rethrows {
        try withUnsafeMutablePointer(to: &dims) {
            try body(UnsafeRawPointer($0).assumingMemoryBound(to: Int64.self))
        }
    }

    private static func describe(_ key: PrimitiveKey) -> String {
        "m=\(key.m) n=\(key.n) k=\(key.k) \(key.transposedWeight ? "A·Wᵀ" : "A·W")\(key.accumulate ? " accumulate" : "")"
    }

    private static func check(_ status: dnnl_status_t, _ operation: String, shape: String) throws {
        guard status == dnnl_success else {
            throw Failure(operation: operation, status: Int(status.rawValue), shape: shape)
        }
    }
}
#endif
