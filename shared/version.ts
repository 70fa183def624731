import pkg from '../package.json' with { type: 'json' };

/** The agent and collector version; bundled into dist/ at build time. */
export const AGENT_VERSION: string = pkg.version;
