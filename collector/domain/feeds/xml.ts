/**
 * XML feeds (OVAL) read safely: saxes (a non-validating streaming parser that never
 * fetches or expands anything beyond the five predefined entities and character
 * references) behind limits of our own, building a small element tree the feed parser
 * walks. The document itself is already bounded by the reader (maxTextBytes, inflate
 * limits); these bound what its shape can cost.
 *
 * Refused, the whole file, nothing stored:
 * - a DOCTYPE (so no entity declaration can ever be made: billion laughs, external
 *   entities), an undefined entity reference, any processing instruction but the XML
 *   declaration, anything not well-formed, a document cut short: PW_ERR_FEED_XML;
 * - nesting deeper than maxDepth, an attribute value or a text node over its size, more
 *   elements or attributes than allowed: PW_ERR_INPUT_TOO_LARGE.
 */
import { SaxesParser } from 'saxes';
import { FeedXmlError, InputTooLargeError, PatchwardenError } from '../../../shared/errors.ts';

export interface XmlElement {
  /** Local name, namespace prefix dropped (`ind:variable_test` -> `variable_test`). */
  name: string;
  attrs: Readonly<Record<string, string>>;
  children: XmlElement[];
  /** The element's own text (not its children's), trimmed; '' when none. */
  text: string;
}

export interface XmlLimits {
  /** Element nesting; OVAL needs about 10 (criteria inside criteria). */
  maxDepth: number;
  /** One attribute value, in UTF-16 code units; OVAL's longest are regex patterns and URLs. */
  maxAttributeChars: number;
  /** One text node; the longest real USN description is about 60 KB. */
  maxTextChars: number;
  /** Elements in the document; Canonical's noble file has 12,814. */
  maxElements: number;
  /** Attributes on one element. */
  maxAttributes: number;
}

export const XML_LIMITS: Readonly<XmlLimits> = Object.freeze({
  maxDepth: 64,
  maxAttributeChars: 64 * 1024,
  maxTextChars: 1024 * 1024,
  maxElements: 2_000_000,
  maxAttributes: 64,
});

/** Fed in slices, so a refusal stops the parse where it happens, not after the whole text. */
const SLICE = 1 << 20;

function localName(name: string): string {
  const i = name.indexOf(':');
  return i < 0 ? name : name.slice(i + 1);
}

/** The document's root element; throws FeedXmlError / InputTooLargeError as the module comment says. */
export function parseXml(text: string, source: string, overrides: Partial<XmlLimits> = {}): XmlElement {
  const limits: XmlLimits = { ...XML_LIMITS, ...overrides };
  const parser = new SaxesParser({ xmlns: false, position: true });
  const stack: XmlElement[] = [];
  const texts: string[][] = [];
  const doc: { root: XmlElement | null } = { root: null };
  let elements = 0;
  let attributes = 0;
  const where = (): string => `${source}:${parser.line}:${parser.column}`;

  parser.on('doctype', () => {
    throw new FeedXmlError(`${where()}: a DOCTYPE is never processed (entity declarations, external entities): refused`);
  });
  parser.on('processinginstruction', (pi) => {
    throw new FeedXmlError(`${where()}: processing instruction <?${pi.target.slice(0, 40)} refused`);
  });
  parser.on('opentagstart', (tag) => {
    elements++;
    attributes = 0;
    if (stack.length >= limits.maxDepth) throw new InputTooLargeError(`${where()}: elements nested deeper than ${limits.maxDepth}`);
    if (elements > limits.maxElements) throw new InputTooLargeError(`${where()}: more than ${limits.maxElements} elements`);
    if (doc.root !== null && stack.length === 0) throw new FeedXmlError(`${where()}: content after the root element`);
    const el: XmlElement = { name: localName(tag.name), attrs: {}, children: [], text: '' };
    const parent = stack[stack.length - 1];
    if (parent === undefined) doc.root = el;
    else parent.children.push(el);
    stack.push(el);
    texts.push([]);
  });
  parser.on('attribute', (attr) => {
    if (++attributes > limits.maxAttributes) throw new InputTooLargeError(`${where()}: more than ${limits.maxAttributes} attributes on one element`);
    if (attr.value.length > limits.maxAttributeChars) throw new InputTooLargeError(`${where()}: attribute ${attr.name.slice(0, 40)} is longer than ${limits.maxAttributeChars} characters`);
    const el = stack[stack.length - 1];
    if (el !== undefined) (el.attrs as Record<string, string>)[localName(attr.name)] = attr.value;
  });
  const addText = (t: string): void => {
    if (t.length > limits.maxTextChars) throw new InputTooLargeError(`${where()}: a text node longer than ${limits.maxTextChars} characters`);
    const parts = texts[texts.length - 1];
    if (parts !== undefined) parts.push(t);
  };
  parser.on('text', addText);
  parser.on('cdata', addText);
  parser.on('closetag', () => {
    const el = stack.pop();
    const parts = texts.pop();
    if (el === undefined || parts === undefined) return;
    if (parts.length > 0) {
      const t = parts.join('').trim();
      if (t.length > limits.maxTextChars) throw new InputTooLargeError(`${where()}: text of one element longer than ${limits.maxTextChars} characters`);
      el.text = t;
    }
  });
  parser.on('error', (err) => {
    throw new FeedXmlError(`${source}: not well-formed XML: ${err.message.slice(0, 300)}`, { cause: err });
  });

  try {
    for (let i = 0; i < text.length; i += SLICE) parser.write(text.slice(i, i + SLICE));
    parser.close();
  } catch (err) {
    if (err instanceof PatchwardenError) throw err;
    throw new FeedXmlError(`${source}: not well-formed XML: ${(err as Error).message.slice(0, 300)}`, { cause: err });
  }
  if (doc.root === null) throw new FeedXmlError(`${source}: no root element`);
  if (stack.length > 0) throw new FeedXmlError(`${source}: the document is cut short (${stack.length} elements left open)`);
  return doc.root;
}

/** The first child with this local name. */
export function child(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}

export function children(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}
