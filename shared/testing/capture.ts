/** Runs a CLI command function with its output captured as text. Tests only. */
import { Writable } from 'node:stream';

export interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString('utf8');
      cb();
    },
  });
  return { stream, text: () => text };
}

export async function runCaptured(command: (argv: string[], io: { stdout: Writable; stderr: Writable }) => Promise<number>, argv: string[]): Promise<Captured> {
  const out = sink();
  const err = sink();
  const code = await command(argv, { stdout: out.stream, stderr: err.stream });
  return { code, stdout: out.text(), stderr: err.text() };
}
