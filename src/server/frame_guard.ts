// The client's LSP frames (`Content-Length: N\r\n\r\n` + N bytes of JSON), checked as they pass on their way
// to vscode-jsonrpc's reader, which would otherwise wait forever for a header that never ends or for a
// body it was told is a terabyte, buffering whatever comes meanwhile.
//
// The guard only protects the reader if both see the same frames, and vscode-jsonrpc's reader is lenient:
// it takes `parseInt` of the Content-Length value ("38Content-Length: 38" is 38, "12abc" is 12), the last of
// two Content-Length lines, a header end only where no extra CR precedes it ("\r\r\n\r\n" is not one), and
// header bytes decoded as 'ascii' (which clears the high bit: 0xBA is ':', 0xB5 is '5'). Each of those read
// differently here would put the guard's count of body bytes out of step with the reader's, after which its
// limits apply to the wrong bytes (a terabyte Content-Length then passes as "body"). So the guard accepts only
// headers that every reader reads alike — lines of printable ASCII `Name: value` joined by CRLF, exactly one
// Content-Length of decimal digits — and refuses anything else, naming it. What any LSP client writes
// (`Content-Length: N`, perhaps a `Content-Type` line) is such a header. A body that is not JSON is the
// reader's to report.
import { Transform, type TransformCallback } from 'node:stream';

/** A header is a line or two (`Content-Length`, maybe `Content-Type`); VS Code's are under 100 bytes. */
export const MAX_HEADER_BYTES = 8 * 1024;
/** The largest message body: a didOpen of a big file. Run configs over 64 kB are refused anyway (READ_LIMITS). */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

const SEPARATOR = Buffer.from('\r\n\r\n');
/** One header line: a name of visible ASCII without ':', a colon, a value of printable ASCII (spaces, tabs). */
const HEADER_LINE = /^([!-9;-~]+):[ \t]*([\t -~]*?)[ \t]*$/;

/** What one header says, or why it is refused. */
export function parseFrameHeader(header: string): { length: number } | { problem: string } {
  let length: number | undefined;
  for (const line of header.split('\r\n')) {
    const m = HEADER_LINE.exec(line);
    if (!m) return { problem: `a message header line that is not "Name: value" in printable ASCII: ${JSON.stringify(line.slice(0, 80))}` };
    if (m[1].toLowerCase() !== 'content-length') continue;
    if (length !== undefined) return { problem: 'a message header with two Content-Length lines' };
    if (!/^\d+$/.test(m[2])) return { problem: `a Content-Length that is not a decimal number: ${JSON.stringify(m[2].slice(0, 80))}` };
    length = Number(m[2]);
    if (length > MAX_FRAME_BYTES) return { problem: `a message of ${m[2]} bytes, over the ${MAX_FRAME_BYTES / 1024 / 1024} MB limit` };
  }
  return length === undefined ? { problem: 'a message header without Content-Length' } : { length };
}

export class FrameGuard extends Transform {
  /** Header bytes seen so far (of a header not yet ended). */
  private header = Buffer.alloc(0);
  /** Body bytes still to pass before the next header. */
  private bodyLeft = 0;
  private failed = false;

  /**
   * `onMalformed` is told once, with what is wrong; nothing passes after it (the bytes before the bad header
   * do). `onFrame`, when given, is told each header's byte count (with its blank line) and body length as
   * the header passes.
   */
  constructor(
    private readonly onMalformed: (problem: string) => void,
    private readonly onFrame?: (headerBytes: number, bodyBytes: number) => void,
  ) {
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
        if (scan.length > MAX_HEADER_BYTES) return this.fail(`a message header longer than ${MAX_HEADER_BYTES} bytes without its blank line`, chunk.subarray(0, i), done);
        this.header = scan;
        break;
      }
      const header = parseFrameHeader(scan.toString('latin1', 0, end));
      if ('problem' in header) return this.fail(header.problem, chunk.subarray(0, i), done);
      this.onFrame?.(end + SEPARATOR.length, header.length);
      this.bodyLeft = header.length;
      this.header = Buffer.alloc(0);
      i += end + SEPARATOR.length - seen;
    }
    done(null, chunk);
  }

  /** Passes the whole frames before the bad header (the reader answers them), then nothing more. */
  private fail(problem: string, before: Buffer, done: TransformCallback): void {
    this.failed = true;
    if (before.length) this.push(before);
    this.onMalformed(problem);
    done();
  }
}
