/**
 * Rollouts over the JSON API (mounted at /api/v1/rollouts). Reads need a viewer token;
 * creating, previewing a new plan and every transition need an operator (or admin) token,
 * and the engine writes each step to the audit log with the actor `api:<token name>`.
 *
 * The engine decides: it validates a plan (PW_ERR_ROLLOUT_PLAN), refuses a transition
 * from the wrong state (PW_ERR_ROLLOUT_STATE), an unknown id (PW_ERR_ROLLOUT_NOT_FOUND)
 * and a four-eyes approval by the creator or submitter (PW_ERR_ROLLOUT_APPROVAL); this
 * file only maps those codes to statuses. Ids that are not uuids are refused before the
 * store is asked, and their text is never echoed.
 */
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import * as z from 'zod';
import { PatchwardenError } from '../../shared/errors.ts';
import { ROLLOUT_OPERATIONS, type RolloutEngine } from '../services/rollouts/engine.ts';
import { parsePlan } from '../domain/rollout/plan.ts';
import { type AuthVariables, type Principal, requireRole } from './auth.ts';
import { ApiError, type ApiStatus, badRequest } from './errors.ts';
import { EmptyQuerySchema, parseQuery } from './query.ts';
import type { Services } from './services.ts';
import { listRollouts, rolloutDetail } from './views.ts';

/**
 * A plan with the most explicit agent ids the schema allows (10,000 uuids) is about 400 KiB;
 * anything past 1 MiB is not a plan.
 */
export const MAX_PLAN_BYTES = 1024 * 1024;

const STATUS_OF: Readonly<Record<string, ApiStatus>> = {
  PW_ERR_ROLLOUT_PLAN: 400,
  PW_ERR_ROLLOUT_APPROVAL: 403,
  PW_ERR_ROLLOUT_NOT_FOUND: 404,
  PW_ERR_ROLLOUT_STATE: 409,
};


type Env = { Variables: AuthVariables };

/** The engine's rollout errors as API errors with the same code; anything else goes on to the app's 500. */
export function rolloutApiError(err: unknown): unknown {
  if (err instanceof PatchwardenError) {
    const status = STATUS_OF[err.code];
    if (status !== undefined) return new ApiError(status, err.code, err.message, { cause: err });
  }
  return err;
}

async function call<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw rolloutApiError(err);
  }
}

const RolloutId = z.uuid();

function rolloutId(raw: string): string {
  if (!RolloutId.safeParse(raw).success) throw new ApiError(404, 'PW_ERR_ROLLOUT_NOT_FOUND', 'no such rollout (a rollout id is a uuid)');
  return raw;
}

function engineOf(s: Services): RolloutEngine {
  const e = s.deps.rollouts;
  if (e === undefined) throw new ApiError(404, 'PW_ERR_NOT_FOUND', 'rollouts are not enabled on this collector');
  return e;
}

function actor(p: Principal | undefined): string {
  return p?.actor ?? 'api:unknown';
}

/** The plan: JSON by its content type, within MAX_PLAN_BYTES (bodyLimit checks the bytes as they arrive, chunked or not). */
async function planBody(c: Context<Env>): Promise<unknown> {
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\s*(;|$)/i.test(type)) throw badRequest('send the plan as Content-Type: application/json');
  const text = await c.req.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw badRequest('the body is not JSON');
  }
}

const limit = bodyLimit({
  maxSize: MAX_PLAN_BYTES,
  onError: () => {
    throw new ApiError(413, 'PW_ERR_INPUT_TOO_LARGE', `a rollout plan is at most ${MAX_PLAN_BYTES} bytes`);
  },
});

export function rolloutRoutes(s: Services): Hono<Env> {
  const app = new Hono<Env>();

  app.get('/', requireRole('viewer'), async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const engine = engineOf(s);
    return c.json({ items: await listRollouts(engine) });
  });

  app.post('/', requireRole('operator'), limit, async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const engine = engineOf(s);
    const body = await planBody(c);
    const id = await call(() => engine.create(body, actor(c.get('principal'))));
    c.header('Location', `/api/v1/rollouts/${id}`);
    return c.json({ rollout: await rolloutDetail(s.deps.store, engine, id) }, 201);
  });

  app.post('/preview', requireRole('operator'), limit, async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const engine = engineOf(s);
    const body = await planBody(c);
    // Parsed here, so a JSON string body is a bad plan and never read as a rollout id.
    return c.json({ preview: await call(() => engine.preview(parsePlan(body))) });
  });

  app.get('/:id', requireRole('viewer'), async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const engine = engineOf(s);
    const id = rolloutId(c.req.param('id'));
    return c.json({ rollout: await call(() => rolloutDetail(s.deps.store, engine, id)) });
  });

  app.get('/:id/preview', requireRole('viewer'), async (c) => {
    parseQuery(EmptyQuerySchema, c.req.queries());
    const engine = engineOf(s);
    const id = rolloutId(c.req.param('id'));
    return c.json({ preview: await call(() => engine.preview(id)) });
  });

  for (const action of ROLLOUT_OPERATIONS) {
    app.post(`/:id/${action}`, requireRole('operator'), async (c) => {
      parseQuery(EmptyQuerySchema, c.req.queries());
      const engine = engineOf(s);
      const id = rolloutId(c.req.param('id'));
      const who = actor(c.get('principal'));
      await call(() => engine.act(action, id, who));
      return c.json({ rollout: await rolloutDetail(s.deps.store, engine, id) });
    });
  }

  return app;
}
