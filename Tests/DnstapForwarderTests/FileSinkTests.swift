import Testing

@testable import DnstapForwarder

@Suite("file sink: where a batch's lines go")
struct FileSinkTests {
    @Test("a batch is placed line by line: what fits goes to the current file, the rest after a rotation; an empty file takes at least one line")
    func placement() {
        func place(_ sizes: [Int], in fileSize: Int) -> (Bool, Int, Int) {
            let result = FileSink.placement(of: sizes, fileSize: fileSize, limit: 25)
            return (result.rotateFirst, result.lines, result.bytes)
        }
        #expect(place([10, 10, 10], in: 0) == (false, 2, 20))
        #expect(place([10, 10, 10], in: 5) == (false, 2, 20), "5 + 20 is the limit exactly")
        #expect(place([10, 10, 10], in: 6) == (false, 1, 10))
        #expect(place([10, 10, 10], in: 20) == (true, 2, 20))
        #expect(place([100, 10], in: 0) == (false, 1, 100), "a line larger than a file gets one of its own")
        #expect(place([100, 10], in: 3) == (true, 1, 100))
        #expect(place([], in: 3) == (false, 0, 0))
    }
}
