/**
 * A real Prometheus text-format parser for the metrics tests: the official Python client's
 * `text_string_to_metric_families` (Debian's python3-prometheus-client, installed by .ci/run),
 * run as a child process per scrape. It refuses malformed exposition text, so a passing parse is
 * evidence the format is right, not just that our own regexes agree with our own output.
 */
import { execFile } from "node:child_process";

const PYTHON = "/usr/bin/python3";

const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "help": family.documentation,
        # JSON has no NaN or Inf: those travel as strings.
        "samples": [
            {"name": s.name, "labels": s.labels,
             "value": s.value if math.isfinite(s.value) else str(s.value)}
            for s in family.samples
        ],
    })
json.dump(families, sys.stdout)
`;

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  /** The family name; counters are named without `_total`, as the parser reports them. */
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: readonly Sample[];
}

/** Parses `text` with the Prometheus Python client; rejects with the parser's error. */
export function parsePrometheusText(text: string): Promise<MetricFamily[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      PYTHON,
      ["-c", PARSE],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) {
          reject(new Error(`the Prometheus parser refused the text: ${stderr}`));
          return;
        }
        try {
          const parsed = JSON.parse(stdout) as MetricFamily[];
          for (const family of parsed) {
            for (const sample of family.samples) {
              (sample as { value: number }).value = Number(sample.value);
            }
          }
          resolve(parsed);
        } catch (parseError) {
          reject(parseError);
        }
      },
    );
    child.stdin?.end(text);
  });
}

/** The samples named `name` whose labels include `labels`. */
export function samples(
  families: readonly MetricFamily[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Sample[] {
  return families
    .flatMap((family) => family.samples)
    .filter(
      (sample) =>
        sample.name === name &&
        Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
    );
}

/** The value of the one sample named `name` with `labels`; throws when there is not exactly one. */
export function value(
  families: readonly MetricFamily[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number {
  const found = samples(families, name, labels);
  if (found.length !== 1) {
    throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)}`);
  }
  return (found[0] as Sample).value;
}
