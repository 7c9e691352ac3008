/**
 * A small structured logger: one JSON object per line on stderr. Levels below the threshold cost a
 * comparison and nothing else (no string building).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export class Logger {
  readonly #min: number;
  readonly #fields: Record<string, unknown>;
  readonly #write: (line: string) => void;

  constructor(level: LogLevel = 'info', fields: Record<string, unknown> = {}, write: (line: string) => void = (l) => process.stderr.write(l)) {
    this.#min = ORDER[level];
    this.#fields = fields;
    this.#write = write;
  }

  child(fields: Record<string, unknown>): Logger {
    const level = (Object.keys(ORDER) as LogLevel[]).find((l) => ORDER[l] === this.#min) ?? 'info';
    return new Logger(level, { ...this.#fields, ...fields }, this.#write);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    if (ORDER.debug >= this.#min) this.#log('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    if (ORDER.info >= this.#min) this.#log('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    if (ORDER.warn >= this.#min) this.#log('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    if (ORDER.error >= this.#min) this.#log('error', msg, fields);
  }

  #log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    this.#write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...this.#fields, ...fields })}\n`);
  }
}
