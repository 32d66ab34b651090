import Foundation

/// Writes a run's scalars as a TensorBoard event file (`tensorboard --logdir OUTPUT` shows them live): TFRecord
/// framing around hand-encoded `Event` protobufs, one event per step, written straight to the file.
final class TensorBoardLog {
    let url: URL
    private let handle: FileHandle

    /// A new file `events.out.tfevents.<time>.<host>` in `folder` (a resumed run gets a new one, as TensorBoard
    /// expects), opened with the `brain.Event:2` version record. `resumedAt`: the step the run restarted from;
    /// a session-start record there tells TensorBoard to drop the steps after it that the old file logged.
    init(folder: URL, resumedAt: Int? = nil) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let time = Date().timeIntervalSince1970
        let base = "events.out.tfevents.\(Int(time)).\(ProcessInfo.processInfo.hostName)"
        var name = base, n = 0
        while FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path) {
            n += 1
            name = "\(base).\(n)"
        }
        url = folder.appendingPathComponent(name)
        guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
            throw TrainingError("\(url.path): cannot create the TensorBoard event file")
        }
        handle = try FileHandle(forWritingTo: url)
        try write(Self.event(wallTime: time, step: 0) { $0.bytes(field: 3, Data("brain.Event:2".utf8)) })
        if let resumedAt {
            // SessionLog { status: START }: TensorBoard purges every event at or after this step.
            try write(Self.event(wallTime: time, step: resumedAt + 1) { $0.message(field: 7) { $0.varint(field: 1, 1) } })
        }
    }
    deinit { try? handle.close() }

    /// One event at `step` with a scalar per metric, tagged as transformers' TensorBoard callback tags them.
    func append(step: Int, metrics: [String: Double]) throws {
        let event = Self.event(wallTime: Date().timeIntervalSince1970, step: step) { event in
            event.message(field: 5) { summary in
                for (key, value) in metrics.sorted(by: { $0.key < $1.key }) {
                    summary.message(field: 1) {
                        $0.bytes(field: 1, Data(Self.tag(forMetric: key).utf8))
                        $0.fixed32(field: 2, Float(value).bitPattern)
                    }
                }
            }
        }
        try write(event)
    }

    /// metrics.jsonl's key as a TensorBoard tag: `eval_loss` → `eval/loss`, `lr` → `train/learning_rate`,
    /// anything else → `train/<key>` (transformers' `rewrite_logs`).
    static func tag(forMetric key: String) -> String {
        if key.hasPrefix("eval_") { return "eval/" + key.dropFirst("eval_".count) }
        return "train/" + (key == "lr" ? "learning_rate" : key)
    }

    /// An `Event` { wall_time (1), step (2), then what `body` adds }.
    static func event(wallTime: Double, step: Int, _ body: (inout ProtobufWriter) -> Void) -> Data {
        var event = ProtobufWriter()
        event.fixed64(field: 1, wallTime.bitPattern)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        body(&event)
        return event.data
    }

    /// One TFRecord: little-endian uint64 length, masked CRC32C of those 8 bytes, the data, masked CRC32C of it.
    static func record(_ data: Data) -> Data {
        var record = Data()
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        record += lengthBytes
        record += littleEndian(maskedCRC32C(lengthBytes))
        record += data
        record += littleEndian(maskedCRC32C(data))
        return record
    }

    private func write(_ event: Data) throws {
        // A single write per event, unbuffered, so a live TensorBoard never sees half a record for long.
        try handle.write(contentsOf: Self.record(event))
    }

    static func littleEndian(_ value: UInt32) -> Data {
        var v = value.littleEndian
        return withUnsafeBytes(of: &v) { Data($0) }
    }

    /// TensorFlow's mask over CRC32C (a CRC of data that holds CRCs is otherwise weak).
    static func maskedCRC32C(_ data: Data) -> UInt32 {
        let crc = crc32c(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
    static func crc32c(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in data { crc = crc32cTable[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
        return crc ^ 0xffff_ffff
    }

    private static let crc32cTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? 0x82f6_3b78 ^ (c >> 1) : c >> 1 }
        return c
    }
}

/// The few protobuf wire types an `Event` needs: varints, fixed 64/32-bit values and length-delimited fields.
struct ProtobufWriter {
    private(set) var data = Data()

    mutating func varint(field: Int, _ value: UInt64) {
        key(field, wireType: 0)
        rawVarint(value)
    }

    mutating func fixed64(field: Int, _ value: UInt64) {
        key(field, wireType: 1)
        for i in 0..<8 { data.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    mutating func fixed32(field: Int, _ value: UInt32) {
        key(field, wireType: 5)
        for i in 0..<4 { data.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    mutating func bytes(field: Int, _ value: Data) {
        key(field, wireType: 2)
        rawVarint(UInt64(value.count))
        data += value
    }

    /// A nested message, built by `body`, as a length-delimited field.
    mutating func message(field: Int, _ body: (inout ProtobufWriter) -> Void) {
        var nested = ProtobufWriter()
        body(&nested)
        bytes(field: field, nested.data)
    }

    private mutating func key(_ field: Int, wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }

    private mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            data.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        data.append(UInt8(v))
    }
}
