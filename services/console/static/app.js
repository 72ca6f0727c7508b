// The Halyard console's page: one EventSource brings the model and every new event;
// the page renders the route in its address (#/, #/events, #/service/<id>,
// #/launcher/<host>) from them. It builds the DOM with text nodes only (no HTML from data).
// The launcher page offers restart, stop and start only when /api/session says this
// caller may act; each action is confirmed in a dialog first.

const EVENTS_KEPT = 2000;
const TIMELINE_WINDOW_MS = 10 * 60_000;
const TIMELINE_MIN_MS = 60_000;

let model; // the console's snapshot (services/console/state.ts ConsoleSnapshot)
let receivedAt = 0; // Date.now() when the snapshot arrived, to age it locally
let events = []; // newest last
let replay; // { since, events } while the events page shows a past window
const filters = { type: '', service: '', host: '' };
let replaySince = '30m';
let session = { control: false }; // /api/session: whether this page may act
const actions = []; // the actions asked from this page, newest first
let actionsAsked = 0;

// --- DOM helpers ---------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function table(headers, rows, empty = 'none') {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((x) => h('th', {}, x)),
      ),
    ),
    h('tbody', {}, rows),
  );
}

function panel(title, count, ...body) {
  return h(
    'section',
    { class: 'panel' },
    h('h2', {}, title, count === undefined ? '' : h('span', { class: 'count' }, ` (${count})`)),
    ...body,
  );
}

function pill(text, health) {
  return h('span', { class: `pill ${health}` }, text);
}

function age(ms) {
  if (ms < 0) ms = 0;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400)
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

const elapsed = () => Date.now() - receivedAt;
const serverNow = () => model.now + elapsed();
const time = (ms) => new Date(ms).toISOString().slice(11, 23);
const link = (href, text) => h('a', { href }, text);

// --- health --------------------------------------------------------------------------

function instanceHealth(i) {
  const leaseAge = i.leaseAgeMs + elapsed();
  if (i.status === 'DOWN' || i.status === 'OUT_OF_SERVICE' || leaseAge > i.leaseSeconds * 1000)
    return 'bad';
  return i.status === 'UP' ? 'ok' : 'warn';
}

function processHealth(p) {
  if (p.state === 'READY') return 'ok';
  if (p.state === 'RUNNING' || p.state === 'STARTING' || p.state === 'STOPPING') return 'warn';
  return 'bad';
}

function streamHealth(s) {
  return (s.replicas > 1 && !s.leader) || s.followers.some((f) => !f.current) ? 'bad' : 'ok';
}

function problems() {
  const found = [];
  for (const s of model.services)
    for (const i of s.instances)
      if (instanceHealth(i) === 'bad') found.push(`${s.serviceId}/${i.instanceId}`);
  for (const i of model.discoveryReplicas)
    if (instanceHealth(i) === 'bad') found.push(i.instanceId);
  for (const l of model.launchers) {
    if (l.stale) found.push(`launcher ${l.hostId}`);
    for (const p of l.processes)
      if (processHealth(p) === 'bad') found.push(`${l.hostId}/${p.component}#${p.instance}`);
  }
  for (const s of model.streams) if (streamHealth(s) === 'bad') found.push(s.name);
  return found;
}

// --- pages ---------------------------------------------------------------------------

function instanceRow(serviceId, i, sticky) {
  const health = instanceHealth(i);
  return h(
    'tr',
    {
      class: health === 'ok' ? '' : health,
      'data-instance': `${serviceId}/${i.instanceId}`,
      'data-status': i.status,
    },
    h('td', {}, i.instanceId),
    h('td', {}, pill(i.status, health)),
    h('td', {}, i.hostId || '-'),
    h('td', {}, i.address),
    h('td', {}, `${age(i.leaseAgeMs + elapsed())} / ${i.leaseSeconds}s`),
    h('td', {}, i.metadata['lb.policy'] ?? 'round-robin'),
    sticky === undefined ? null : h('td', { 'data-sticky': i.instanceId }, String(sticky)),
  );
}

function overview() {
  const serviceRows = model.services.flatMap((s) =>
    s.instances.map((i, n) => {
      const row = instanceRow(s.serviceId, i);
      row.prepend(
        h(
          'td',
          {},
          n === 0 ? link(`#/service/${encodeURIComponent(s.serviceId)}`, s.serviceId) : '',
        ),
      );
      return row;
    }),
  );
  const launcherRows = model.launchers.flatMap((l) =>
    l.processes.map((p, n) =>
      processRow(l, p, n === 0 ? link(`#/launcher/${encodeURIComponent(l.hostId)}`, l.hostId) : ''),
    ),
  );
  return [
    h('h1', {}, 'Overview'),
    panel(
      'Services',
      model.services.length,
      table(
        ['Service', 'Instance', 'Status', 'Host', 'Address', 'Lease age', 'Policy'],
        serviceRows,
        'no service registered',
      ),
    ),
    h(
      'div',
      { class: 'grid' },
      panel(
        'Discovery replicas',
        model.discoveryReplicas.length,
        table(
          ['Replica', 'Status', 'Host', 'Address', 'Lease age', ''],
          model.discoveryReplicas.map((i) => instanceRow('discovery', i)),
        ),
      ),
      panel(
        'Gateways',
        model.gateways.length,
        table(
          ['Gateway', 'State', 'Address'],
          model.gateways.map((g) =>
            h(
              'tr',
              { class: processHealth(g) === 'ok' ? '' : processHealth(g) },
              h('td', {}, `${g.host}/gateway-${g.instance}`),
              h('td', {}, pill(g.state, processHealth(g))),
              h('td', {}, g.port ? `127.0.0.1:${g.port}` : '-'),
            ),
          ),
        ),
      ),
    ),
    panel(
      'Launchers and their processes',
      model.launchers.length,
      table(
        ['Host', 'Process', 'State', 'PID', 'Port', 'Uptime', 'Restarts', 'Last exit'],
        launcherRows,
        'no launcher answered',
      ),
    ),
    panel('Bus streams', model.streams.length, streamsTable()),
  ];
}

function processRow(launcher, p, first) {
  const health = launcher.stale ? 'bad' : processHealth(p);
  const up =
    p.startedAtMs && (p.state === 'READY' || p.state === 'RUNNING')
      ? age(serverNow() - p.startedAtMs)
      : '-';
  return h(
    'tr',
    {
      class: health === 'ok' ? '' : health,
      'data-process': `${launcher.hostId}/${p.component}#${p.instance}`,
      'data-state': p.state,
      'data-pid': p.pid,
    },
    first === undefined ? null : h('td', {}, first),
    h('td', {}, `${p.component}#${p.instance}`),
    h('td', {}, pill(p.state, health)),
    h('td', {}, p.pid ? String(p.pid) : '-'),
    h('td', {}, p.port ? String(p.port) : '-'),
    h('td', {}, up),
    h('td', {}, String(p.restarts)),
    h('td', {}, p.lastExit || ''),
  );
}

function streamsTable() {
  return table(
    ['Stream', 'Replicas', 'Messages', 'Leader', 'Followers'],
    model.streams.map((s) => {
      const health = streamHealth(s);
      return h(
        'tr',
        { class: health === 'ok' ? '' : 'bad', 'data-stream': s.name },
        h('td', {}, s.name),
        h('td', {}, String(s.replicas)),
        h('td', {}, String(s.messages)),
        h('td', {}, s.leader ?? (s.replicas > 1 ? pill('no leader', 'bad') : '-')),
        h(
          'td',
          {},
          s.followers.map((f) => `${f.name}${f.current ? '' : ` (behind ${f.lag})`}`).join(', ') ||
            '-',
        ),
      );
    }),
  );
}

function describe(e) {
  switch (e.source) {
    case 'lifecycle':
      return {
        who: `${e.hostId}/${e.component}#${e.instance}`,
        what: e.kind,
        detail: [
          e.pid ? `pid ${e.pid}` : '',
          e.port ? `port ${e.port}` : '',
          e.signal ? `signal ${e.signal}` : '',
          e.kind === 'EXITED' && !e.signal ? `code ${e.exitCode}` : '',
          e.delayMs ? `in ${age(e.delayMs)}` : '',
          e.attempt ? `attempt ${e.attempt}` : '',
          e.reason,
        ],
      };
    case 'gateway':
      return {
        who: e.gatewayId,
        what: e.kind,
        detail: [
          e.serviceId ? `${e.serviceId}/${e.instanceId}` : '',
          e.toInstanceId ? `→ ${e.toInstanceId}` : '',
          e.userKey ? `user key ${e.userKey.slice(0, 10)}…` : '',
          e.ejectionSeconds ? `for ${e.ejectionSeconds}s` : '',
          e.reason,
        ],
      };
    default:
      return {
        who: e.replicaId,
        what: e.kind,
        detail: [
          e.serviceId ? `${e.serviceId}/${e.instanceId}` : '',
          e.status && e.status !== 'INSTANCE_STATUS_UNSPECIFIED' ? e.status : '',
          e.detail,
        ],
      };
  }
}

function eventTable(list) {
  const rows = list
    .slice()
    .reverse()
    .map((e) => {
      const { who, what, detail } = describe(e);
      const bad = [
        'EXITED',
        'GAVE_UP',
        'INSTANCE_EJECTED',
        'LEASE_EXPIRED',
        'SELF_PRESERVATION_ENTERED',
      ].includes(what);
      return h(
        'tr',
        { class: bad ? 'warn' : '', 'data-event-kind': what, 'data-seq': e.seq },
        h('td', {}, time(e.occurredAtMs)),
        h('td', { class: 'muted' }, `#${e.seq}`),
        h('td', {}, e.source),
        h('td', {}, who),
        h('td', {}, what),
        h('td', { class: 'wrap' }, detail.filter(Boolean).join(' · ')),
      );
    });
  return table(['Time (UTC)', 'Seq', 'Source', 'Who', 'What', 'Detail'], rows, 'no events');
}

const matches = (e) =>
  (!filters.type || e.source === filters.type) &&
  (!filters.service || e.service === filters.service) &&
  (!filters.host || e.host === filters.host);

/**
 * The events page's filters: built when the page opens and kept while it is shown, so
 * redraws (every event, every second) leave what is typed and the focus alone.
 */
function eventControls() {
  const field = (name, control) => h('label', {}, name, control);
  const onFilter = (key) => (ev) => {
    filters[key] = ev.target.value.trim();
    if (!replay) render();
  };
  const since = h('input', {
    id: 'replay-since',
    value: replaySince,
    size: 6,
    oninput: (ev) => {
      replaySince = ev.target.value;
    },
  });
  const runReplay = async () => {
    const span = replaySince.trim();
    const q = new URLSearchParams({ since: span });
    for (const key of ['type', 'service', 'host']) if (filters[key]) q.set(key, filters[key]);
    const res = await fetch(`/api/events?${q}`);
    const body = await res.json();
    if (!res.ok) return alert(body.error);
    replay = { since: span, events: body };
    render();
  };
  return h(
    'div',
    { class: 'filters' },
    field(
      'Type',
      h(
        'select',
        { id: 'filter-type', onchange: onFilter('type') },
        ['', 'lifecycle', 'gateway', 'discovery'].map((t) =>
          h('option', { value: t, selected: filters.type === t }, t || 'all'),
        ),
      ),
    ),
    field(
      'Service',
      h('input', {
        id: 'filter-service',
        value: filters.service,
        placeholder: 'any',
        onchange: onFilter('service'),
      }),
    ),
    field(
      'Host',
      h('input', {
        id: 'filter-host',
        value: filters.host,
        placeholder: 'any',
        onchange: onFilter('host'),
      }),
    ),
    field('Replay the last', since),
    h('button', { id: 'replay', onclick: runReplay }, 'Replay'),
  );
}

/** The events page below its filters: the live tail, or the replay asked for. */
function eventsBody() {
  const banner = replay
    ? h(
        'div',
        { class: 'banner', id: 'replay-banner' },
        `Replay of the last ${replay.since}: ${replay.events.length} events (filters as when asked) `,
        h(
          'button',
          {
            id: 'live-tail',
            onclick: () => {
              replay = undefined;
              render();
            },
          },
          'Back to live',
        ),
      )
    : h('div', { class: 'banner' }, 'Live tail: new events appear at the top');
  const shown = replay ? replay.events : events.filter(matches);
  return [banner, h('section', { class: 'panel' }, eventTable(shown.slice(-500)))];
}

/** The timeline spans what the console has seen: a minute at least, ten at most. */
function timelineWindow(service, now) {
  const first = Math.min(now, ...service.timeline.map((t) => t.atMs));
  return Math.min(TIMELINE_WINDOW_MS, Math.max(TIMELINE_MIN_MS, now - first));
}

function timeline(service) {
  const now = serverNow();
  const span = timelineWindow(service, now);
  const start = now - span;
  const x = (t) => `${Math.max(0, ((t - start) / span) * 100)}%`;
  const ids = [
    ...new Set([
      ...service.instances.map((i) => i.instanceId),
      ...service.timeline.map((t) => t.instanceId),
    ]),
  ].sort();
  const lanes = ids.map((id) => {
    const track = h('div', { class: 'track' });
    const entries = service.timeline.filter((t) => t.instanceId === id);
    const states = entries.filter((t) => t.what !== 'EJECTED' && t.what !== 'RETURNED');
    states.forEach((t, n) => {
      const until = states[n + 1]?.atMs ?? now;
      if (until < start || t.what === 'REMOVED' || t.what === 'EXPIRED') return;
      const seg = h('div', { class: `seg ${t.what}`, title: `${t.what} from ${time(t.atMs)}` });
      seg.style.left = x(t.atMs);
      seg.style.width = `${Math.max(0.3, ((until - Math.max(t.atMs, start)) / span) * 100)}%`;
      track.append(seg);
    });
    for (const t of entries.filter(
      (e) => (e.what === 'EJECTED' || e.what === 'RETURNED') && e.atMs >= start,
    )) {
      const tick = h('div', { class: `tick ${t.what}`, title: `${t.what} at ${time(t.atMs)}` });
      tick.style.left = x(t.atMs);
      track.append(tick);
    }
    return h('div', { class: 'lane', 'data-lane': id }, h('span', { class: 'name' }, id), track);
  });
  const swatch = (cls, text) => h('span', {}, h('i', { class: cls }), text);
  const legend = h(
    'div',
    { class: 'legend muted' },
    ['UP', 'STARTING', 'DRAINING', 'DOWN'].map((s) => swatch(`seg ${s}`, s.toLowerCase())),
    swatch('tick', 'ejected by a gateway'),
    swatch('tick RETURNED', 'returned'),
  );
  return h(
    'div',
    { class: 'timeline' },
    lanes,
    h('div', { class: 'axis' }, h('span', {}, `${age(span)} ago`), h('span', {}, 'now')),
    legend,
  );
}

function servicePage(serviceId) {
  const service = model.services.find((s) => s.serviceId === serviceId);
  if (!service)
    return [
      h('h1', {}, serviceId),
      h('p', { class: 'muted' }, 'No instance of this service is registered.'),
    ];
  const rows = service.instances.map((i) =>
    instanceRow(serviceId, i, service.stickyUsers[i.instanceId] ?? 0),
  );
  const lb = Object.entries(service.lb);
  const totalSticky = Object.values(service.stickyUsers).reduce((a, b) => a + b, 0);
  return [
    h('h1', {}, `Service ${serviceId}`),
    panel(
      'Instances',
      service.instances.length,
      table(['Instance', 'Status', 'Host', 'Address', 'Lease age', 'Policy', 'Sticky users'], rows),
    ),
    panel('Timeline', undefined, timeline(service)),
    h(
      'div',
      { class: 'grid' },
      panel(
        'Balancing settings (lb.*)',
        lb.length,
        lb.length
          ? table(
              ['Key', 'Value'],
              lb.map(([k, v]) => h('tr', {}, h('td', {}, h('code', {}, k)), h('td', {}, v))),
            )
          : h('p', { class: 'muted' }, 'none: round-robin'),
      ),
      panel(
        'Sticky users per instance',
        totalSticky,
        h(
          'p',
          { class: 'muted' },
          'Counts of live preferences in the affinity bucket (user keys are digests; no user id is shown).',
        ),
        table(
          ['Instance', 'Users'],
          Object.entries(service.stickyUsers).map(([id, n]) =>
            h('tr', {}, h('td', {}, id), h('td', {}, String(n))),
          ),
          'no sticky user',
        ),
      ),
    ),
    panel(
      'Recent events',
      undefined,
      eventTable(events.filter((e) => e.service === serviceId).slice(-50)),
    ),
  ];
}

// --- control verbs ------------------------------------------------------------------

const VERBS = ['restart', 'stop', 'start'];

/** Asks in a modal dialog (kept outside the page, which redraws every second). */
function confirmAction(text) {
  let dialog = document.getElementById('confirm');
  if (!dialog) {
    dialog = h(
      'dialog',
      { id: 'confirm' },
      h('p', { id: 'confirm-text' }),
      h(
        'div',
        { class: 'dialog-buttons' },
        h('button', { id: 'confirm-cancel', value: 'cancel' }, 'Cancel'),
        h('button', { id: 'confirm-ok', class: 'danger', value: 'ok' }, 'Confirm'),
      ),
    );
    document.body.append(dialog);
  }
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    const answer = (ok) => () => {
      dialog.close();
      resolve(ok);
    };
    document.getElementById('confirm-ok').onclick = answer(true);
    document.getElementById('confirm-cancel').onclick = answer(false);
    dialog.oncancel = answer(false); // Escape
    dialog.showModal();
  });
}

async function act(host, verb, component, instance) {
  const target = instance ? `${component}#${instance}` : `${component} (every instance)`;
  if (!(await confirmAction(`${verb} ${target} on ${host}?`))) return;
  const entry = { id: ++actionsAsked, at: Date.now(), host, verb, target, outcome: 'pending' };
  actions.unshift(entry);
  actions.splice(10);
  render();
  try {
    const res = await fetch('/api/control', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-halyard-csrf': session.csrf },
      body: JSON.stringify({ host, verb, component, instance }),
    });
    const body = await res.json();
    if (res.ok) {
      entry.outcome = body.accepted ? 'accepted' : 'refused';
      entry.detail = body.detail;
    } else {
      entry.outcome = res.status === 403 ? 'forbidden' : 'failed';
      entry.detail = body.error;
    }
  } catch (error) {
    entry.outcome = 'failed';
    entry.detail = String(error);
  }
  render();
}

function verbButtons(host, component, instance) {
  return VERBS.map((verb) =>
    h(
      'button',
      {
        class: verb === 'start' ? '' : 'danger',
        'data-verb': verb,
        'data-target': instance ? `${component}#${instance}` : component,
        onclick: () => act(host, verb, component, instance),
      },
      verb,
    ),
  );
}

function actionsPanel() {
  const health = { accepted: 'ok', pending: 'warn' };
  return panel(
    'Actions from this page',
    actions.length,
    table(
      ['Asked (UTC)', 'Action', 'Outcome', 'Detail'],
      actions.map((a) =>
        h(
          'tr',
          { 'data-action': a.id, 'data-outcome': a.outcome },
          h('td', {}, time(a.at)),
          h('td', {}, `${a.verb} ${a.target} on ${a.host}`),
          h('td', {}, pill(a.outcome, health[a.outcome] ?? 'bad')),
          h('td', { class: 'wrap' }, a.detail ?? ''),
        ),
      ),
      'none yet: each action asks for a confirmation first',
    ),
  );
}

function launcherPage(hostId) {
  const launcher = model.launchers.find((l) => l.hostId === hostId);
  if (!launcher)
    return [
      h('h1', {}, `Launcher ${hostId}`),
      h('p', { class: 'muted' }, 'This launcher has not answered.'),
    ];
  return [
    h('h1', {}, `Launcher ${hostId}`),
    h(
      'p',
      { class: 'muted' },
      `launcher ${launcher.launcherId} · version ${launcher.version || '-'} · up ${age(serverNow() - launcher.startedAtMs)}`,
      launcher.stale ? pill('not answering', 'bad') : '',
    ),
    panel(
      'Processes',
      launcher.processes.length,
      table(
        ['Process', 'State', 'PID', 'Port', 'Uptime', 'Restarts', 'Last exit'].concat(
          session.control ? ['Actions'] : [],
        ),
        launcher.processes.map((p) => {
          const row = processRow(launcher, p);
          if (session.control)
            row.append(h('td', { class: 'actions' }, verbButtons(hostId, p.component, p.instance)));
          return row;
        }),
      ),
    ),
    session.control ? componentsPanel(launcher) : null,
    session.control ? actionsPanel() : null,
    panel(
      'Recent lifecycle events',
      undefined,
      eventTable(events.filter((e) => e.source === 'lifecycle' && e.host === hostId).slice(-50)),
    ),
    session.control
      ? h('p', { class: 'muted' }, `Acting as ${session.identity}; every action is logged.`)
      : h(
          'p',
          { class: 'muted', id: 'read-only' },
          `${session.why ?? 'Read-only.'} Restart, stop and start are also \`halyard launcher\` commands.`,
        ),
  ];
}

/** A component's verbs act on every instance of it on this host. */
function componentsPanel(launcher) {
  const components = [...new Set(launcher.processes.map((p) => p.component))].sort();
  return panel(
    'Components',
    components.length,
    table(
      ['Component', 'Instances', 'Every instance'],
      components.map((c) =>
        h(
          'tr',
          { 'data-component': c },
          h('td', {}, c),
          h('td', {}, String(launcher.processes.filter((p) => p.component === c).length)),
          h('td', { class: 'actions' }, verbButtons(launcher.hostId, c, 0)),
        ),
      ),
    ),
  );
}

// --- rendering and the live feed -----------------------------------------------------

function route() {
  const [, page, arg] = (location.hash || '#/').split('/');
  return { page: page || 'overview', arg: arg ? decodeURIComponent(arg) : undefined };
}

function render() {
  if (!model) return;
  const { page, arg } = route();
  const main = document.getElementById('page');
  if (page === 'events') {
    let body = document.getElementById('events-body');
    if (!body) {
      body = h('div', { id: 'events-body' });
      main.replaceChildren(h('h1', {}, 'Events'), eventControls(), body);
    }
    body.replaceChildren(...eventsBody());
  } else {
    main.replaceChildren(
      ...(page === 'service'
        ? servicePage(arg)
        : page === 'launcher'
          ? launcherPage(arg)
          : overview()),
    );
  }
  for (const a of document.querySelectorAll('[data-nav]'))
    a.classList.toggle('active', a.dataset.nav === page);
  const found = problems();
  document
    .getElementById('problems')
    .replaceChildren(
      found.length
        ? h('span', { class: 'badge-bad', title: found.join('\n') }, `${found.length} unhealthy`)
        : h('span', { class: 'badge-ok' }, 'all healthy'),
    );
  const s = model.server;
  document.getElementById('bus').textContent =
    `bus ${s.name ?? '?'}${s.cluster ? ` (cluster ${s.cluster})` : ''}${s.connected ? '' : ' — disconnected'}`;
}

function connect() {
  const live = document.getElementById('live');
  const source = new EventSource('/api/stream');
  source.addEventListener('open', () => {
    live.textContent = 'live';
    live.className = 'conn live';
  });
  source.addEventListener('error', () => {
    live.textContent = 'reconnecting…';
    live.className = 'conn down';
  });
  source.addEventListener('state', (m) => {
    model = JSON.parse(m.data);
    receivedAt = Date.now();
    render();
  });
  source.addEventListener('history', (m) => {
    const seen = new Set(events.map((e) => e.seq));
    events = events
      .concat(JSON.parse(m.data).filter((e) => !seen.has(e.seq)))
      .sort((a, b) => a.seq - b.seq)
      .slice(-EVENTS_KEPT);
    render();
  });
  source.addEventListener('event', (m) => {
    events.push(JSON.parse(m.data));
    if (events.length > EVENTS_KEPT) events.shift();
    if (route().page !== 'overview') render();
  });
}

window.addEventListener('hashchange', () => {
  replay = undefined;
  render();
});
// Ages and lease ages move on between pushes.
setInterval(render, 1000);
fetch('/api/session')
  .then((res) => (res.ok ? res.json() : { control: false }))
  .then((s) => {
    session = s;
    render();
  });
connect();
