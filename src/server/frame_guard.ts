// The client's LSP frames (`Content-Length: N\r\n\r\n` + N bytes of JSON), checked as they pass on their way
// to vscode-jsonrpc's reader, which would otherwise wait forever for a header that never ends or for a
// body it was told is a terabyte, buffering whatever comes meanwhile. Everything else about a frame (a
// missing or non-numeric length, a body that is not JSON) the reader reports itself.
import { Transform, type TransformCallback } from 'node:stream';

/** A header is a line or two (`Content-Length`, maybe `Content-Type`); VS Code's are under 100 bytes. */
export const MAX_HEADER_BYTES = 8 * 1024;
/** The largest message body: a didOpen of a big file. Run configs over 64 kB are refused anyway (READ_LIMITS). */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

const SEPARATOR = Buffer.from('\r\n\r\n');

export class FrameGuard extends Transform {
  /** Header bytes seen so far (of a header not yet ended). */
  private header = Buffer.alloc(0);
  /** Body bytes still to pass before the next header. */
  private bodyLeft = 0;
  private failed = false;

  /** `onMalformed` is told once, with what is wrong; nothing passes after it. */
  constructor(private readonly onMalformed: (problem: string) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.failed) return done();
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= n;
        i += n;
        continue;
      }
      const seen = this.header.length;
      const scan = Buffer.concat([this.header, chunk.subarray(i, i + MAX_HEADER_BYTES + SEPARATOR.length)]);
      const end = scan.indexOf(SEPARATOR);
      if (end < 0 || end > MAX_HEADER_BYTES) {
        if (scan.length > MAX_HEADER_BYTES) return this.fail(`a message header longer than ${MAX_HEADER_BYTES} bytes without its blank line`, done);
        this.header = scan;
        break;
      }
      const length = /^content-length:[ \t]*(\d+)[ \t]*$/im.exec(scan.toString('latin1', 0, end))?.[1];
      if (length !== undefined && Number(length) > MAX_FRAME_BYTES) {
        return this.fail(`a message of ${length} bytes, over the ${MAX_FRAME_BYTES / 1024 / 1024} MB limit`, done);
      }
      this.bodyLeft = length === undefined ? 0 : Number(length);
      this.header = Buffer.alloc(0);
      i += end + SEPARATOR.length - seen;
    }
    done(null, chunk);
  }

  private fail(problem: string, done: TransformCallback): void {
    this.failed = true;
    this.onMalformed(problem);
    done();
  }
}
