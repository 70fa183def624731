/**
 * Numbered migrations, run in order at start inside one transaction each. Never edit a
 * migration that has shipped: add the next number. `PRAGMA user_version` records the
 * last one applied.
 */
import { ADVISORY_CHANGES_MIGRATION } from './advisory-changes.ts';
import { EPSS_MIGRATION } from './epss.ts';

export const MIGRATIONS: readonly string[] = [
  // 1: advisory feeds, the advisories themselves, the affected index and KEV.
  `
  CREATE TABLE feeds (
    source        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    location      TEXT,
    records       INTEGER NOT NULL DEFAULT 0,
    newest        TEXT,
    imported_at   TEXT,
    checked_at    TEXT,
    last_error    TEXT,
    etag          TEXT,
    last_modified TEXT
  ) STRICT;

  CREATE TABLE advisories (
    feed       TEXT NOT NULL REFERENCES feeds (source),
    source     TEXT NOT NULL,
    id         TEXT NOT NULL,
    hash       TEXT NOT NULL,
    severity   TEXT NOT NULL,
    published  TEXT,
    modified   TEXT,
    withdrawn  TEXT,
    data       TEXT NOT NULL,
    PRIMARY KEY (source, id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX advisories_by_feed ON advisories (feed);

  -- One row per (advisory, ecosystem, package): the correlation index.
  CREATE TABLE affected (
    source    TEXT NOT NULL,
    id        TEXT NOT NULL,
    ecosystem TEXT NOT NULL,
    package   TEXT NOT NULL,
    PRIMARY KEY (ecosystem, package, source, id),
    FOREIGN KEY (source, id) REFERENCES advisories (source, id) ON DELETE CASCADE
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX affected_by_advisory ON affected (source, id);

  CREATE TABLE kev (
    cve                TEXT PRIMARY KEY,
    date_added         TEXT NOT NULL,
    due_date           TEXT NOT NULL,
    vendor_project     TEXT NOT NULL,
    product            TEXT NOT NULL,
    ransomware         TEXT
  ) STRICT, WITHOUT ROWID;

  -- Per-host finding history: first seen and resolved times, for time-to-remediate.
  -- host is the machine-id when the agent knows it, else the host name.
  CREATE TABLE finding_history (
    host       TEXT NOT NULL,
    advisory   TEXT NOT NULL,
    package    TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    resolved   TEXT,
    status     TEXT NOT NULL,
    finding    TEXT NOT NULL,
    PRIMARY KEY (host, advisory, package)
  ) STRICT, WITHOUT ROWID;

  -- Accepted risks: an owner, a reason and an expiry; host NULL = every host.
  CREATE TABLE exceptions (
    id         INTEGER PRIMARY KEY,
    advisory   TEXT NOT NULL,
    package    TEXT,
    host       TEXT,
    owner      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    expires    TEXT NOT NULL,
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE INDEX exceptions_by_advisory ON exceptions (advisory);
  `,
  // 2: KEV rows per feed. CISA's JSON and CSV catalogs disagree on some entries (the
  // 2025-11-17 CSV says knownRansomwareCampaignUse "Known" for six CVEs that the
  // 2025-08-25 JSON says "Unknown"), so one row per CVE made the two feeds overwrite each
  // other on every import. Rows from version 1 go to the KEV feed imported last.
  `
  CREATE TABLE kev_by_feed (
    feed               TEXT NOT NULL REFERENCES feeds (source),
    cve                TEXT NOT NULL,
    date_added         TEXT NOT NULL,
    due_date           TEXT NOT NULL,
    vendor_project     TEXT NOT NULL,
    product            TEXT NOT NULL,
    ransomware         TEXT,
    PRIMARY KEY (feed, cve)
  ) STRICT, WITHOUT ROWID;
  INSERT OR IGNORE INTO feeds (source, kind)
    SELECT 'kev', 'kev-json' WHERE EXISTS (SELECT 1 FROM kev) AND NOT EXISTS (SELECT 1 FROM feeds WHERE kind LIKE '%kev%');
  INSERT INTO kev_by_feed (feed, cve, date_added, due_date, vendor_project, product, ransomware)
    SELECT (SELECT source FROM feeds WHERE kind LIKE '%kev%' OR source = 'kev' ORDER BY imported_at DESC LIMIT 1),
           cve, date_added, due_date, vendor_project, product, ransomware
    FROM kev;
  DROP TABLE kev;
  ALTER TABLE kev_by_feed RENAME TO kev;
  CREATE INDEX kev_by_cve ON kev (cve);
  UPDATE feeds SET records = (SELECT count(*) FROM advisories a WHERE a.feed = feeds.source)
    + (SELECT count(*) FROM kev WHERE kev.feed = feeds.source);
  `,
  // 3: `affected` becomes a view over the advisories' own JSON. The table was derived
  // state that nothing read (correlation uses the in-memory index built from `data`), and
  // its 71k random-order key inserts were half the cost of importing the AlmaLinux feeds.
  // The view keeps it queryable for operators with SQL.
  `
  DROP TABLE affected;
  CREATE VIEW affected (source, id, ecosystem, package) AS
    SELECT DISTINCT a.source, a.id, json_extract(e.value, '$.ecosystem'), json_extract(e.value, '$.package')
    FROM advisories a, json_each(a.data, '$.affected') e
    WHERE a.withdrawn IS NULL;
  `,
  // 4: the fleet. Agents enroll with a token (only its hash is stored) and register an
  // ed25519 public key; every report is kept (history), the packages of identical
  // inventories once (by content hash); `hosts` is each agent's current state for the API.
  `
  CREATE TABLE enrollment_tokens (
    id          INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    uses_left   INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_at  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    note        TEXT
  ) STRICT;

  CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    public_key          TEXT NOT NULL UNIQUE,
    hostname            TEXT NOT NULL,
    machine_id          TEXT,
    token_id            INTEGER REFERENCES enrollment_tokens (id),
    enrolled_at         TEXT NOT NULL,
    revoked_at          TEXT,
    agent_version       TEXT,
    connected           INTEGER NOT NULL DEFAULT 0,
    last_seen           TEXT,
    last_inventory_hash TEXT,
    tags                TEXT NOT NULL DEFAULT '[]'
  ) STRICT;

  -- The packages (and kernel) of an inventory, stored once however many hosts share them.
  CREATE TABLE inventory_contents (
    hash          TEXT PRIMARY KEY,
    ecosystem     TEXT,
    package_count INTEGER NOT NULL,
    packages      TEXT NOT NULL,
    created_at    TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE reports (
    id             TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents (id),
    received_at    TEXT NOT NULL,
    inventory_hash TEXT NOT NULL,
    content_hash   TEXT NOT NULL REFERENCES inventory_contents (hash),
    -- The inventory without its packages (host, kernel, reboot, warnings).
    envelope       TEXT NOT NULL
  ) STRICT;
  CREATE INDEX reports_by_agent ON reports (agent_id, received_at);

  CREATE TABLE hosts (
    agent_id        TEXT PRIMARY KEY REFERENCES agents (id),
    hostname        TEXT NOT NULL,
    ecosystem       TEXT,
    package_count   INTEGER NOT NULL,
    kernel_release  TEXT NOT NULL,
    kernel_managed  INTEGER NOT NULL,
    reboot_required INTEGER NOT NULL,
    last_report_id  TEXT NOT NULL REFERENCES reports (id),
    last_report_at  TEXT NOT NULL,
    open_findings   INTEGER NOT NULL DEFAULT 0,
    overdue_findings INTEGER NOT NULL DEFAULT 0
  ) STRICT;
  CREATE INDEX hosts_by_ecosystem ON hosts (ecosystem);
  CREATE INDEX hosts_by_hostname ON hosts (hostname);

  CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    hash       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
  ) STRICT;

  -- Every change, who made it and when: enrollments, revocations, tokens, exceptions.
  CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
  ) STRICT;
  CREATE INDEX audit_by_time ON audit (at);
  `,
  // 5: packages by reference. A report may name its package set by packageSetHash
  // (shared/inventory-hash.ts) instead of sending it; the index finds a stored copy. Rows
  // from before have no package_set and are simply not found by reference.
  `
  ALTER TABLE inventory_contents ADD COLUMN package_set TEXT;
  CREATE INDEX inventory_contents_by_set ON inventory_contents (package_set) WHERE package_set IS NOT NULL;
  `,
  // 6: rollouts (issue 5): each rollout with its frozen plan and state, one row per host
  // with its wave and step, and the outbox of signed instructions the gateway delivers.
  // A collector restart resumes from these rows alone.
  `
  CREATE TABLE rollouts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    plan          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('draft', 'awaiting-approval', 'running', 'paused', 'halted', 'completed', 'cancelled')),
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    submitted_by  TEXT,
    approved_by   TEXT,
    approved_at   TEXT,
    started_at    TEXT,
    finished_at   TEXT,
    updated_at    TEXT NOT NULL,
    current_wave  INTEGER NOT NULL DEFAULT -1,
    wave_count    INTEGER NOT NULL DEFAULT 0,
    wave_done_at  TEXT,
    halted_reason TEXT
  ) STRICT;
  CREATE INDEX rollouts_by_state ON rollouts (state);

  CREATE TABLE rollout_hosts (
    rollout_id     TEXT NOT NULL REFERENCES rollouts (id),
    agent_id       TEXT NOT NULL REFERENCES agents (id),
    wave           INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'succeeded', 'failed', 'refused', 'expired', 'not-back')),
    step           TEXT,
    steps          TEXT NOT NULL,
    instruction_id TEXT,
    boot_id        TEXT,
    result         TEXT,
    detail         TEXT,
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (rollout_id, agent_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX rollout_hosts_by_agent ON rollout_hosts (agent_id, state);
  CREATE INDEX rollout_hosts_by_instruction ON rollout_hosts (instruction_id);

  -- Signed instructions waiting for their agent (the gateway sends them at connect and when
  -- told), with the agent's result once it came.
  CREATE TABLE instruction_outbox (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id),
    rollout_id   TEXT REFERENCES rollouts (id),
    payload      TEXT NOT NULL,
    signature    TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    enqueued_at  TEXT NOT NULL,
    sent_at      TEXT,
    result_at    TEXT,
    result       TEXT,
    expired_at   TEXT,
    withdrawn_at TEXT
  ) STRICT;
  CREATE INDEX instruction_outbox_pending ON instruction_outbox (agent_id, enqueued_at)
    WHERE result_at IS NULL AND expired_at IS NULL AND withdrawn_at IS NULL;
  CREATE INDEX instruction_outbox_by_rollout ON instruction_outbox (rollout_id);
  `,
  // 7: inventory_contents as a rowid table. WITHOUT ROWID keeps each 200 KB package list
  // inside the primary-key b-tree, and SQLite reads a whole overflowing record to compare
  // keys: a lookup by hash (every report, and every foreign-key check of a report) cost
  // 280 us with 500 stored sets, against 2 us for a rowid table's separate index.
  // The table-rebuild procedure of sqlite.org/lang_altertable.html (foreign keys are off
  // while migrations run; migrate() checks them before each commit).
  `
  CREATE TABLE inventory_contents_new (
    hash          TEXT PRIMARY KEY,
    ecosystem     TEXT,
    package_count INTEGER NOT NULL,
    packages      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    package_set   TEXT
  ) STRICT;
  INSERT INTO inventory_contents_new (hash, ecosystem, package_count, packages, created_at, package_set)
    SELECT hash, ecosystem, package_count, packages, created_at, package_set FROM inventory_contents;
  DROP TABLE inventory_contents;
  ALTER TABLE inventory_contents_new RENAME TO inventory_contents;
  CREATE INDEX inventory_contents_by_set ON inventory_contents (package_set) WHERE package_set IS NOT NULL;
  `,
  // 8: reports carried across an air gap in signed files (collector/services/airgap/). One row per
  // file imported, also when its inventory was unchanged (nothing in reports then), so a
  // second import of the same file is known; a serving collector picks up rows past the
  // last seq it saw and correlates those hosts.
  `
  CREATE TABLE report_imports (
    seq         INTEGER PRIMARY KEY,
    report_id   TEXT NOT NULL UNIQUE,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    status      TEXT NOT NULL CHECK (status IN ('stored', 'unchanged')),
    created_at  TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    imported_by TEXT NOT NULL
  ) STRICT;
  `,
  // 9: feed bundles carried across an air gap (collector/services/airgap/feed-bundle.ts): when the
  // newest imported bundle of each feed was made, so an older bundle cannot roll it back.
  `
  ALTER TABLE feeds ADD COLUMN bundle_created_at TEXT;
  `,
  // 10: who did it. audit.uid is the unix uid of the process that wrote the row (the
  // operator for the CLI, beside the `cli:<name>` its passwd entry gave); an exception keeps
  // the actor who accepted the risk beside the owner it names. Older rows have NULL.
  `
  ALTER TABLE audit ADD COLUMN uid INTEGER;
  ALTER TABLE exceptions ADD COLUMN created_by TEXT;
  `,
  // 11: /healthz proves the store can commit by rewriting this one row (collector/store/health.ts).
  `
  CREATE TABLE store_heartbeat (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  TEXT NOT NULL,
    pid INTEGER NOT NULL
  ) STRICT;
  `,
  // 12: why a rollout could not advance (rollouts.last_error, JSON {code, message, at}) and
  // why a host failed (rollout_hosts.code: the agent's result code or the collector's own,
  // PW_ERR_INSTRUCTION_BUILD), shown by the API, the CLI and the dashboard (issue 10).
  `
  ALTER TABLE rollouts ADD COLUMN last_error TEXT;
  ALTER TABLE rollout_hosts ADD COLUMN code TEXT;
  `,
  // 13: a report id is its agent's own (issue 10). Ids were unique across all agents, so
  // an agent that sent a report under another host's id (read off that host's file on a
  // shared carry medium) had that host's genuine report refused. reports and
  // report_imports are keyed by (agent_id, id) now, and hosts names its current report by
  // both. Rowids are kept (the dashboard's fleet signature reads max(rowid) of reports).
  // The table-rebuild procedure of sqlite.org/lang_altertable.html, as in 7.
  `
  CREATE TABLE reports_new (
    id             TEXT NOT NULL,
    agent_id       TEXT NOT NULL REFERENCES agents (id),
    received_at    TEXT NOT NULL,
    inventory_hash TEXT NOT NULL,
    content_hash   TEXT NOT NULL REFERENCES inventory_contents (hash),
    envelope       TEXT NOT NULL,
    UNIQUE (agent_id, id)
  ) STRICT;
  INSERT INTO reports_new (rowid, id, agent_id, received_at, inventory_hash, content_hash, envelope)
    SELECT rowid, id, agent_id, received_at, inventory_hash, content_hash, envelope FROM reports;
  DROP TABLE reports;
  ALTER TABLE reports_new RENAME TO reports;
  CREATE INDEX reports_by_agent ON reports (agent_id, received_at);

  CREATE TABLE hosts_new (
    agent_id        TEXT PRIMARY KEY REFERENCES agents (id),
    hostname        TEXT NOT NULL,
    ecosystem       TEXT,
    package_count   INTEGER NOT NULL,
    kernel_release  TEXT NOT NULL,
    kernel_managed  INTEGER NOT NULL,
    reboot_required INTEGER NOT NULL,
    last_report_id  TEXT NOT NULL,
    last_report_at  TEXT NOT NULL,
    open_findings   INTEGER NOT NULL DEFAULT 0,
    overdue_findings INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY (agent_id, last_report_id) REFERENCES reports (agent_id, id)
  ) STRICT;
  INSERT INTO hosts_new (agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at, open_findings, overdue_findings)
    SELECT agent_id, hostname, ecosystem, package_count, kernel_release, kernel_managed, reboot_required, last_report_id, last_report_at, open_findings, overdue_findings FROM hosts;
  DROP TABLE hosts;
  ALTER TABLE hosts_new RENAME TO hosts;
  CREATE INDEX hosts_by_ecosystem ON hosts (ecosystem);
  CREATE INDEX hosts_by_hostname ON hosts (hostname);

  CREATE TABLE report_imports_new (
    seq         INTEGER PRIMARY KEY,
    report_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL REFERENCES agents (id),
    status      TEXT NOT NULL CHECK (status IN ('stored', 'unchanged')),
    created_at  TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    imported_by TEXT NOT NULL,
    UNIQUE (agent_id, report_id)
  ) STRICT;
  INSERT INTO report_imports_new (seq, report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by)
    SELECT seq, report_id, agent_id, status, created_at, file_sha256, imported_at, imported_by FROM report_imports;
  DROP TABLE report_imports;
  ALTER TABLE report_imports_new RENAME TO report_imports;
  `,
  // 14: each agent keeps its newest reports only (REPORTS_PER_AGENT in reports.ts, issue 10):
  // deleting an inventory no report names any more looks reports up by content, as does
  // the foreign-key check of that delete; without this index each one scanned the table.
  `
  CREATE INDEX reports_by_content ON reports (content_hash);
  `,
  // 15: which ecosystems each feed's advisories name (issue 11, coverage truth): a host is
  // assessed only when a feed covers its ecosystem. Kept by AdvisoryStore.importFeed;
  // filled here from the advisories already stored.
  `
  CREATE TABLE feed_coverage (
    feed      TEXT NOT NULL REFERENCES feeds (source) ON DELETE CASCADE,
    ecosystem TEXT NOT NULL,
    PRIMARY KEY (feed, ecosystem)
  ) STRICT, WITHOUT ROWID;
  INSERT OR IGNORE INTO feed_coverage (feed, ecosystem)
    SELECT a.feed, json_extract(e.value, '$.ecosystem') FROM advisories a, json_each(a.data, '$.affected') e
    WHERE json_extract(e.value, '$.ecosystem') IS NOT NULL;
  `,
  // 16: the advisory change log a serving collector follows (collector/store/advisory-changes.ts, issue 11).
  ADVISORY_CHANGES_MIGRATION,
  // 17: FIRST EPSS scores, one set replaced whole per import (collector/store/epss.ts, issue 11).
  EPSS_MIGRATION,
  // 18: findings history in two layers (collector/store/history.ts, issue 11 section 5): each
  // inventory content's own timeline, shared by its hosts, and which content a host's
  // history is laid over since when. Hosts start with none: their existing rows are their
  // own, and their next correlation lays their content over them.
  `
  -- By package first: a feed change re-judges a content's findings of the changed packages.
  -- The finding's text is apart: a host's history reads the whole timeline of its content,
  -- and with the text inline (500 bytes a row) that read cost 2.7 us a row.
  CREATE TABLE content_findings (
    content    TEXT NOT NULL,
    package    TEXT NOT NULL,
    advisory   TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    resolved   TEXT,
    status     TEXT NOT NULL,
    PRIMARY KEY (content, package, advisory)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE content_finding_texts (
    content  TEXT NOT NULL,
    package  TEXT NOT NULL,
    advisory TEXT NOT NULL,
    finding  TEXT NOT NULL,
    PRIMARY KEY (content, package, advisory)
  ) STRICT, WITHOUT ROWID;
  ALTER TABLE hosts ADD COLUMN findings_content TEXT;
  ALTER TABLE hosts ADD COLUMN findings_since TEXT;
  CREATE INDEX hosts_by_findings_content ON hosts (findings_content);
  -- A content group's counts skip the hosts with exceptions of their own: looked up per host.
  CREATE INDEX exceptions_by_host ON exceptions (host, expires);
  `,
  // 19: which collector holds each agent's connection (issue 12 section 3), and the
  // collectors' liveness (collector/store/replicas.ts). A replica marks its own connections
  // and clears only those; one that dies has its marks cleared by another once its heartbeat
  // expires. SQLite's one collector writes the same rows; it also clears every mark at start.
  // Times are each engine's own clock (ISO text), so replicas whose clocks disagree still
  // agree on who is alive.
  `
  ALTER TABLE agents ADD COLUMN connected_by TEXT;
  UPDATE agents SET connected = 0 WHERE connected = 1;
  CREATE INDEX agents_by_connected_by ON agents (connected_by) WHERE connected_by IS NOT NULL;
  CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
  ) STRICT;
  `,
];
