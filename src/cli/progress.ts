/**
 * One status line on a terminal, rewritten in place; on a pipe or a CI log, a plain line at
 * most every few seconds so logs stay readable. `log()` prints a permanent line above it.
 */
export interface ProgressLine {
  update(text: string): void;
  log(text: string): void;
  done(text: string): void;
}

export function progressLine(stream: NodeJS.WriteStream, now: () => number = Date.now): ProgressLine {
  const tty = stream.isTTY === true;
  let shown = '';
  let lastPlain = 0;
  const clear = (): void => {
    if (tty && shown) stream.write(`\r${' '.repeat(shown.length)}\r`);
  };
  return {
    update(text) {
      if (tty) {
        clear();
        stream.write(text);
        shown = text;
      } else if (now() - lastPlain >= 5_000) {
        lastPlain = now();
        stream.write(`${text}\n`);
      }
    },
    log(text) {
      clear();
      stream.write(`${text}\n`);
      if (tty && shown) stream.write(shown);
    },
    done(text) {
      clear();
      shown = '';
      stream.write(`${text}\n`);
    },
  };
}
