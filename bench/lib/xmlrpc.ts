/**
 * A minimal XML-RPC client over node:http, enough for supervisord's API (strings, ints,
 * booleans, arrays, structs, faults). Keep-alive connections, like a long-lived supervisorctl.
 */
import http from "node:http";

export type XmlRpcValue =
  | string
  | number
  | boolean
  | null
  | XmlRpcValue[]
  | { [key: string]: XmlRpcValue };

export class XmlRpcFault extends Error {
  override readonly name = "XmlRpcFault";
  readonly faultCode: number;
  readonly faultString: string;
  constructor(faultCode: number, faultString: string) {
    super(`XML-RPC fault ${faultCode}: ${faultString}`);
    this.faultCode = faultCode;
    this.faultString = faultString;
  }
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replace(/&amp;/g, "&");
}

function encodeValue(value: XmlRpcValue): string {
  if (value === null) return "<value><nil/></value>";
  if (typeof value === "string") return `<value><string>${escapeXml(value)}</string></value>`;
  if (typeof value === "boolean") return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (typeof value === "number") {
    return Number.isInteger(value)
      ? `<value><int>${value}</int></value>`
      : `<value><double>${value}</double></value>`;
  }
  if (Array.isArray(value)) {
    return `<value><array><data>${value.map(encodeValue).join("")}</data></array></value>`;
  }
  const members = Object.entries(value)
    .map(([k, v]) => `<member><name>${escapeXml(k)}</name>${encodeValue(v)}</member>`)
    .join("");
  return `<value><struct>${members}</struct></value>`;
}

export function encodeCall(method: string, params: readonly XmlRpcValue[]): string {
  return `<?xml version="1.0"?><methodCall><methodName>${escapeXml(method)}</methodName><params>${params
    .map((p) => `<param>${encodeValue(p)}</param>`)
    .join("")}</params></methodCall>`;
}

/** Tokens: tags (`<name>`, `</name>`, `<name/>`) and text between them. */
class Parser {
  readonly #tokens: string[];
  #at = 0;
  constructor(xml: string) {
    this.#tokens = xml
      .replace(/<\?xml[^>]*\?>/, "")
      .split(/(<[^>]+>)/)
      .filter((t) => t.trim() !== "");
  }
  peek(): string | undefined {
    return this.#tokens[this.#at];
  }
  next(): string {
    const token = this.#tokens[this.#at++];
    if (token === undefined) throw new Error("XML-RPC: unexpected end of document");
    return token;
  }
  expect(tag: string): void {
    const token = this.next();
    if (token !== tag) throw new Error(`XML-RPC: expected ${tag}, got ${token}`);
  }
  /** Text up to the closing tag (empty when the element is empty). */
  text(close: string): string {
    if (this.peek() === close) {
      this.next();
      return "";
    }
    const text = this.next();
    this.expect(close);
    return unescapeXml(text);
  }
}

function parseValue(p: Parser): XmlRpcValue {
  p.expect("<value>");
  const tag = p.next();
  let value: XmlRpcValue;
  switch (tag) {
    case "</value>":
      return "";
    case "<string>":
      value = p.text("</string>");
      break;
    case "<string/>":
      value = "";
      break;
    case "<int>":
    case "<i4>":
      value = Number(p.text(tag.replace("<", "</")));
      break;
    case "<double>":
      value = Number(p.text("</double>"));
      break;
    case "<boolean>":
      value = p.text("</boolean>") === "1";
      break;
    case "<nil/>":
      value = null;
      break;
    case "<array>": {
      const items: XmlRpcValue[] = [];
      const open = p.next();
      if (open === "<data>") {
        while (p.peek() === "<value>") items.push(parseValue(p));
        p.expect("</data>");
      } else if (open !== "<data/>") {
        throw new Error(`XML-RPC: expected <data>, got ${open}`);
      }
      p.expect("</array>");
      value = items;
      break;
    }
    case "<struct>": {
      const struct: Record<string, XmlRpcValue> = {};
      while (p.peek() === "<member>") {
        p.next();
        p.expect("<name>");
        const key = p.text("</name>");
        struct[key] = parseValue(p);
        p.expect("</member>");
      }
      p.expect("</struct>");
      value = struct;
      break;
    }
    default:
      if (tag.startsWith("<")) throw new Error(`XML-RPC: unsupported value ${tag}`);
      // A bare string without a type tag.
      value = unescapeXml(tag);
      p.expect("</value>");
      return value;
  }
  p.expect("</value>");
  return value;
}

export function decodeResponse(xml: string): XmlRpcValue {
  const p = new Parser(xml);
  p.expect("<methodResponse>");
  const head = p.next();
  if (head === "<fault>") {
    const fault = parseValue(p) as Record<string, XmlRpcValue>;
    throw new XmlRpcFault(Number(fault.faultCode), String(fault.faultString));
  }
  if (head !== "<params>") throw new Error(`XML-RPC: unexpected ${head}`);
  p.expect("<param>");
  return parseValue(p);
}

/** A client for `http://127.0.0.1:{port}/RPC2`. */
export class XmlRpcClient {
  readonly #port: number;
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

  constructor(port: number) {
    this.#port = port;
  }

  call(
    method: string,
    params: readonly XmlRpcValue[] = [],
    timeoutMs = 120_000,
  ): Promise<XmlRpcValue> {
    const body = encodeCall(method, params);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: this.#port,
          path: "/RPC2",
          method: "POST",
          agent: this.#agent,
          timeout: timeoutMs,
          headers: { "content-type": "text/xml", "content-length": Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            if (res.statusCode !== 200) {
              reject(new Error(`XML-RPC ${method}: HTTP ${res.statusCode}`));
              return;
            }
            try {
              resolve(decodeResponse(Buffer.concat(chunks).toString("utf8")));
            } catch (error) {
              reject(error);
            }
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () =>
        req.destroy(new Error(`XML-RPC ${method}: timed out after ${timeoutMs} ms`)),
      );
      req.on("error", reject);
      req.end(body);
    });
  }

  close(): void {
    this.#agent.destroy();
  }
}
