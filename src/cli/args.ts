import { CaError } from '../errors';

export interface ParsedArgs {
  options: Record<string, string | undefined>;
  positional: string[];
}

/** `--name value` and `--name=value` options; the rest are positional. */
export function parseArgs(argv: string[], known: string[], flags: string[] = []): ParsedArgs {
  const out: ParsedArgs = { options: {}, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      out.positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (flags.includes(name) && eq < 0) {
      out.options[name] = 'true';
      continue;
    }
    if (!known.includes(name)) throw new CaError('badRequest', 'usage', `unknown option --${name}`);
    const value = eq < 0 ? argv[++i] : a.slice(eq + 1);
    if (value === undefined) throw new CaError('badRequest', 'usage', `option --${name} needs a value`);
    out.options[name] = value;
  }
  return out;
}
