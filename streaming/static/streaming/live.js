// The live page: agents and events over the /ws/live/ websocket; reconnects with ?since= so
// nothing is missed while the connection was down. The feed is filtered here, in the page: every
// event still reaches the agents table and the events-per-second chart. Every text from an event
// goes in with textContent, never as HTML.
(function () {
  "use strict";
  const root = document.getElementById("live");
  const staleSeconds = parseFloat(root.dataset.staleSeconds);
  const agentLinks = JSON.parse(document.getElementById("agent-links").textContent);
  const agentTable = document.querySelector("#agents tbody"); // absent for staff who may not view agents
  const feed = document.getElementById("feed");
  const connection = document.getElementById("connection");
  const typeFilter = document.getElementById("type-filter");
  const agentFilter = document.getElementById("agent-filter");
  const showHeartbeats = document.getElementById("show-heartbeats");
  const folded = document.getElementById("folded");
  const HEARTBEAT = "agent.heartbeat";
  const FEED_LIMIT = 200; // events listed
  const KEPT = 2000; // events kept to list again when a filter changes
  const FIELDS_SHOWN = 24; // fields of one event's data
  const RATE_SECONDS = 60; // seconds the chart spans
  const agents = new Map(); // agent_id -> its state, from the API and the agent.* events
  const agentRows = new Map(); // agent_id -> its row's cells
  const kept = [];
  const perSecond = new Array(RATE_SECONDS).fill(0);
  let thisSecond = 0;
  let foldedCount = 0;
  let live = false; // past the replay of a reconnect: events arriving now
  let lastEventId = root.dataset.since || null; // where the feed resumes: first the last minute, as the server said
  let retryDelay = 1000;

  function text(tag, className, value) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    element.textContent = value;
    return element;
  }

  function percent(progress) {
    return progress <= 1 ? progress * 100 : progress;
  }

  function secondsAgo(iso) {
    return (Date.now() - Date.parse(iso)) / 1000;
  }

  function isStale(agent) {
    if (agent.stopped) return false;
    return agent.stale || secondsAgo(agent.last_beat) > (agent.stale_after_seconds || staleSeconds);
  }

  // --- Options of the filters -------------------------------------------------------------

  function addOption(select, value) {
    const options = [...select.options].slice(1); // after "all ..."
    if (options.some((option) => option.value === value)) return;
    const option = text("option", "", value);
    option.value = value;
    select.insertBefore(option, options.find((other) => other.value.localeCompare(value) > 0) || null);
  }

  // The agents an event is about: the agent it names, a signal's sender and target, an alert's agent.
  function agentsOf(event) {
    const data = event.data && typeof event.data === "object" ? event.data : {};
    const details = data.details && typeof data.details === "object" ? data.details : {};
    const names = [data.agent_id, data.agent_name, data.source_agent, data.target_agent, details.agent_id, details.agent_name];
    return [...new Set(names.filter((name) => typeof name === "string" && name))];
  }

  // --- The agents table --------------------------------------------------------------------

  function agentRow(agentId) {
    let cells = agentRows.get(agentId);
    if (cells) return cells;
    const row = document.createElement("tr");
    row.dataset.agent = agentId;
    cells = { row, name: text("span", "name", ""), id: text("span", "id", ""), badge: text("span", "badge", "") };
    cells.bar = document.createElement("progress");
    cells.bar.max = 100;
    cells.percent = text("span", "percent", "");
    cells.task = text("td", "task", "");
    cells.lastBeat = text("td", "last-beat", "");
    const agentCell = text("td", "agent", "");
    agentCell.append(cells.name, cells.id);
    if (agentLinks.length) {
      const links = text("div", "links", "");
      for (const link of agentLinks) {
        const anchor = text("a", "", link.label);
        anchor.href = link.url + encodeURIComponent(agentId);
        links.append(anchor);
      }
      agentCell.append(links);
    }
    const status = document.createElement("td");
    status.append(cells.badge);
    const progress = text("td", "progress", "");
    progress.append(cells.bar, cells.percent);
    row.append(agentCell, status, progress, cells.task, cells.lastBeat);
    agentRows.set(agentId, cells);
    const ids = [...agentRows.keys()].sort((a, b) => a.localeCompare(b));
    agentTable.querySelector(".empty")?.remove();
    agentTable.insertBefore(row, agentRows.get(ids[ids.indexOf(agentId) + 1])?.row || null);
    return cells;
  }

  function renderAgents() {
    if (!agentTable) return;
    for (const agent of agents.values()) {
      const cells = agentRow(agent.agent_id);
      const stale = isStale(agent);
      cells.row.classList.toggle("stale", stale);
      cells.row.classList.toggle("stopped", Boolean(agent.stopped));
      cells.name.textContent = agent.display_name || agent.agent_id;
      cells.id.textContent = agent.display_name && agent.display_name !== agent.agent_id ? agent.agent_id : "";
      cells.badge.textContent = stale ? "stale" : agent.status || (agent.stopped ? "stopped" : "");
      cells.bar.value = percent(agent.progress || 0);
      cells.percent.textContent = Math.round(cells.bar.value) + "%";
      cells.task.textContent = agent.current_task || "";
      cells.lastBeat.textContent = Math.max(0, Math.round(secondsAgo(agent.last_beat))) + " s ago";
    }
  }

  function updateAgent(event) {
    const data = event.data;
    const known = agents.get(data.agent_id) || {};
    const agent = Object.assign(known, data);
    agent.stopped = event.event_type === "agent.stopped";
    if (event.event_type === "agent.stale") agent.stale = true;
    if (event.event_type === "agent.recovered" || event.event_type === HEARTBEAT) agent.stale = false;
    agents.set(data.agent_id, agent);
  }

  // --- The feed ------------------------------------------------------------------------------

  function wanted(event) {
    const type = typeFilter.value;
    if (type ? event.event_type !== type : event.event_type === HEARTBEAT && !showHeartbeats.checked) return false;
    return !agentFilter.value || event.agents.includes(agentFilter.value);
  }

  const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

  // A field's value as shown (a time as the local time of day) and as its tooltip (the whole value).
  function display(value) {
    if (typeof value === "object") return [JSON.stringify(value), JSON.stringify(value)];
    if (ISO_TIME.test(value)) return [new Date(value).toLocaleTimeString(), value];
    return [String(value), String(value)];
  }

  // The data's fields as [name, shown, whole] lists, nested objects under dotted names; empty ones
  // (null or "") left out.
  function fields(data, prefix, found) {
    for (const [name, value] of Object.entries(data)) {
      if (value === null || value === undefined || value === "") continue;
      if (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
        fields(value, prefix + name + ".", found);
      } else {
        found.push([prefix + name, ...display(value)]);
      }
    }
    return found;
  }

  function eventItem(event) {
    const item = document.createElement("li");
    item.dataset.type = event.event_type;
    const head = text("div", "head", "");
    const time = event.timestamp ? new Date(event.timestamp).toLocaleTimeString() : "";
    head.append(text("time", "", time), text("span", "type", event.event_type));
    for (const agent of event.agents) head.append(text("span", "agent", agent));
    item.append(head);
    const data = event.data && typeof event.data === "object" ? event.data : { value: event.data };
    const pairs = fields(data, "", []);
    const list = text("dl", "fields", "");
    for (const [name, shown, whole] of pairs.slice(0, FIELDS_SHOWN)) {
      const pair = document.createElement("div");
      const value = text("dd", "", shown);
      value.title = whole;
      pair.append(text("dt", "", name), value);
      list.append(pair);
    }
    if (pairs.length > FIELDS_SHOWN) list.append(text("div", "more", "+" + (pairs.length - FIELDS_SHOWN) + " more fields"));
    if (pairs.length) item.append(list);
    return item;
  }

  function showFolded() {
    const hidden = !typeFilter.value && !showHeartbeats.checked;
    folded.textContent = hidden && foldedCount ? foldedCount + " heartbeats not listed" : "";
  }

  function emptyNote(message) {
    feed.replaceChildren(text("li", "empty", message));
  }

  function renderFeed() {
    const items = [];
    for (let i = kept.length - 1; i >= 0 && items.length < FEED_LIMIT; i--) {
      if (wanted(kept[i])) items.push(eventItem(kept[i]));
    }
    if (items.length) feed.replaceChildren(...items);
    else emptyNote(kept.length ? "No event matches the filters yet." : "Waiting for events…");
    showFolded();
  }

  function showEvent(event) {
    if (!wanted(event)) return;
    feed.querySelector(".empty")?.remove();
    const item = eventItem(event);
    item.className = "new";
    feed.prepend(item);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
  }

  // --- Events per second ----------------------------------------------------------------------

  function drawRate() {
    const top = Math.max(1, ...perSecond);
    const points = perSecond.map((count, i) => {
      const x = (i * 120) / (RATE_SECONDS - 1);
      const y = 27 - (count / top) * 25;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    document.querySelector("#rate-chart polyline").setAttribute("points", points.join(" "));
    const recent = perSecond.slice(-5).reduce((sum, count) => sum + count, 0) / 5;
    document.getElementById("rate").textContent = recent < 10 ? recent.toFixed(1) : Math.round(recent);
  }

  function tick() {
    perSecond.push(thisSecond);
    perSecond.shift();
    thisSecond = 0;
    drawRate();
    renderAgents(); // ages and stale marks move on without events
  }

  // --- The connection ----------------------------------------------------------------------------

  async function countApprovals() {
    // Asked of the server, not counted from events: events missed while disconnected cannot skew it.
    const pendingCount = document.querySelector("#pending-approvals b"); // only for those who may view approvals
    if (!pendingCount) return;
    const response = await fetch(root.dataset.approvalsUrl, { credentials: "same-origin" });
    if (response.ok) pendingCount.textContent = (await response.json()).length;
  }

  function handle(event) {
    lastEventId = event.event_id;
    event.agents = agentsOf(event);
    if (live) thisSecond++;
    if (event.event_type.startsWith("agent.") && event.data && event.data.agent_id) updateAgent(event);
    if (event.event_type.startsWith("approval.")) countApprovals();
    if (event.event_type === HEARTBEAT) foldedCount++;
    addOption(typeFilter, event.event_type);
    event.agents.forEach((agent) => addOption(agentFilter, agent));
    kept.push(event);
    if (kept.length > KEPT) kept.shift();
    showEvent(event);
  }

  function setConnection(state, label) {
    connection.className = "connection " + state;
    connection.textContent = label;
  }

  async function loadAgents() {
    if (!agentTable) return;
    for (const url of [root.dataset.activeUrl, root.dataset.staleUrl]) {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) continue;
      for (const agent of await response.json()) {
        agents.set(agent.agent_id, agent);
        addOption(agentFilter, agent.agent_id);
      }
    }
    renderAgents();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const query = lastEventId ? "?since=" + encodeURIComponent(lastEventId) : "";
    const socket = new WebSocket(scheme + location.host + root.dataset.feedUrl + query);
    socket.onmessage = (message) => {
      const body = JSON.parse(message.data);
      if (body.type === "ready") {
        if (body.live_after) lastEventId = body.live_after; // replayed up to here: a reconnect resumes after it
        live = true;
        setConnection("connected", "live");
        retryDelay = 1000;
        countApprovals();
      } else if (body.type === "events") {
        body.events.forEach(handle);
        renderAgents();
        showFolded();
      } else if (body.type === "error") {
        setConnection("disconnected", body.error.message);
      }
    };
    socket.onclose = () => {
      live = false;
      setConnection("disconnected", "disconnected, reconnecting in " + retryDelay / 1000 + " s");
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }

  for (const type of JSON.parse(document.getElementById("event-types").textContent)) addOption(typeFilter, type);
  for (const control of [typeFilter, agentFilter, showHeartbeats]) control.addEventListener("change", renderFeed);
  loadAgents().finally(connect);
  setInterval(tick, 1000);
})();
