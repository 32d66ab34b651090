import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. The bytes stay valid for the lifetime of the object; unmapped on deinit.
public final class MappedFile: @unchecked Sendable {
    // @unchecked Sendable: the mapping is read-only and never changes after init.
    public let url: URL
    /// The file's bytes. Empty files map to an empty buffer.
    public let bytes: UnsafeRawBufferPointer

    public init(url: URL) throws {
        self.url = url
        let path = url.path
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw FormatError(path: path, problem: "cannot open file (\(String(cString: strerror(errno))))",
                              fix: "check that the path exists and is readable")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw FormatError(path: path, problem: "cannot read file size (\(String(cString: strerror(errno))))")
        }
        // Widened because mode_t and the S_IF* constants have different integer types on Linux and Darwin.
        guard UInt32(status.st_mode) & UInt32(S_IFMT) == UInt32(S_IFREG) else {
            throw FormatError(path: path, problem: "is not a regular file")
        }
        let size = Int(status.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0)
        guard let address, address != MAP_FAILED else {
            throw FormatError(path: path, problem: "cannot memory-map \(size) bytes (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(address), count: size)
    }

    deinit {
        if let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }

    public var count: Int { bytes.count }

    /// Lets the kernel drop the pages read so far from this process's resident memory. The mapping stays valid:
    /// a later read faults the page back in from the file. After the weights are copied out (dequantized to
    /// float32 or requantized), the mapped file would otherwise count in the resident set for the whole run.
    public func releaseResidentPages() {
        guard let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base), bytes.count, Int32(MADV_DONTNEED))
    }
}

/// Writes a file by streaming into a temporary file beside it and renaming it into place, so a reader never
/// sees a half-written model and a failed write leaves any old file untouched.
public struct AtomicFileWriter {
    public let destination: URL

    public init(destination: URL) { self.destination = destination }

    /// Writes `data` to `url` atomically: a reader sees the old file or the new one, never half of one.
    public static func write(_ data: Data, to url: URL) throws {
        try AtomicFileWriter(destination: url).write { try $0.write(contentsOf: data) }
    }

    public func write(_ produce: (FileHandle) throws -> Void) throws {
        let directory = destination.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(destination.lastPathComponent).\(UUID().uuidString).tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw FormatError(path: destination.path, problem: "cannot create temporary file \(temporary.lastPathComponent)",
                              fix: "check that the folder exists and is writable")
        }
        do {
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }
            try produce(handle)
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            if let formatError = error as? FormatError { throw formatError }
            throw FormatError(path: destination.path, problem: "write failed: \(error)")
        }
        guard rename(temporary.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw FormatError(path: destination.path, problem: "cannot move the finished file into place (\(reason))")
        }
    }
}
