import Foundation

/// A dense float32 array with a shape, stored row-major in one 64-byte-aligned allocation.
///
/// A class, not a value type: tensors are large, shared between layers and caches, and written in place by
/// kernels; copying one is always explicit (`copy()`).
public final class Tensor: @unchecked Sendable {
    public private(set) var shape: [Int]
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
        TensorMemory.allocated(max(count, 1) * MemoryLayout<Float>.stride)
    }

    /// A tensor holding `values`, whose count must match the shape.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(zeros: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }

    deinit {
        pointer.deallocate()
        TensorMemory.freed(max(count, 1) * MemoryLayout<Float>.stride)
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }

    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    /// Gives the same storage another shape with the same element count.
    public func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    public func copy() -> Tensor {
        let result = Tensor(zeros: shape)
        result.pointer.update(from: pointer, count: count)
        return result
    }

    public func fill(_ value: Float) { pointer.update(repeating: value, count: count) }
}

/// The bytes held by live tensors, and the most held at once since `resetPeak()`: what the memory planner's
/// estimates are checked against. Every tensor counts its allocation when created and when freed, under one lock
/// (a tensor is created per layer call at most, so the lock is never hot).
public enum TensorMemory {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var live = 0
    nonisolated(unsafe) private static var peak = 0

    /// Bytes of all tensors alive now.
    public static var liveBytes: Int { locked { live } }
    /// The largest `liveBytes` since the process started or `resetPeak()` was last called.
    public static var peakBytes: Int { locked { peak } }
    /// Starts a new peak from what is alive now.
    public static func resetPeak() { locked { peak = live } }

    static func allocated(_ bytes: Int) {
        locked {
            live += bytes
            if live > peak { peak = live }
        }
    }

    static func freed(_ bytes: Int) { locked { live -= bytes } }

    // lock()/unlock() rather than NSLocking.withLock, which older macOS SDKs lack.
    private static func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }
}

/// Floats that grow to the largest count asked of them and are then reused: workspaces whose size depends on
/// the call (attention scores grow with the cache).
public final class ScratchBuffer: @unchecked Sendable {
    private var storage = Tensor(zeros: [0])
    public init() {}

    public func pointer(atLeast count: Int) -> UnsafeMutablePointer<Float> {
        if storage.count < count { storage = Tensor(zeros: [count]) }
        return storage.pointer
    }
}
