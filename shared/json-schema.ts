/**
 * JSON Schemas of the wire documents, generated from the zod schemas (zod is the source
 * of truth; the JSON files are for other languages and tools). `npm run schema` writes
 * them; a test fails when a committed file is out of date.
 */
import * as z from 'zod';
import { FINDINGS_SCHEMA, FindingsSchema, INVENTORY_SCHEMA, InventorySchema } from './protocol.ts';

export const SCHEMA_FILES: Readonly<Record<string, () => unknown>> = {
  'inventory.schema.json': () => ({
    $id: 'urn:patchwarden:schema:inventory:1',
    title: INVENTORY_SCHEMA,
    ...z.toJSONSchema(InventorySchema, { target: 'draft-2020-12' }),
  }),
  'findings.schema.json': () => ({
    $id: 'urn:patchwarden:schema:findings:1',
    title: FINDINGS_SCHEMA,
    ...z.toJSONSchema(FindingsSchema, { target: 'draft-2020-12' }),
  }),
};

export function renderSchema(name: string): string {
  const make = SCHEMA_FILES[name];
  if (make === undefined) throw new Error(`no schema ${name}`);
  return JSON.stringify(make(), null, 2) + '\n';
}
