// The gateway's event stream, one per browser, shared by all its tabs.
//
// A browser opens at most six HTTP/1.1 connections to a host, and an
// EventSource holds one for as long as its page lives: with a stream per
// tab the seventh tab never loads. So one EventSource serves every tab:
//
//   - in a SharedWorker (this same file, run as the worker), which hands
//     each event to every tab through its MessagePort;
//   - where there is no SharedWorker, in the tab elected leader with a Web
//     Lock, which passes the events on over a BroadcastChannel; when it
//     goes, the next tab in line takes the lock and opens the stream;
//   - where neither exists, in each tab.
//
// A tab leaves on pagehide (its stream closes when the last tab leaves)
// and joins again on pageshow, coming back from the back-forward cache.
// A tab that dies without a pagehide is noticed through a Web Lock it
// holds for as long as it lives.
"use strict";

// The events the gateway sends (docs/api.md).
const streamEvents = ["hello", "status", "file", "file_deleted", "job", "node", "node_removed", "cluster", "resync"];

// EventHub holds one EventSource and hands every event to its sinks, as
// {type, data}, and {type: "error", closed} when the stream fails. It
// keeps the state so far (nodes, cluster, status), as the gateway gives a
// new stream, to give a tab that joins later: {type: "hello", replay:
// true} and then that state.
class EventHub {
  constructor(url) {
    this.url = url;
    this.sinks = new Set();
    this.es = null;
    this.hello = null; // the open stream's hello, or null
    this.state = new Map();
  }
  add(sink) {
    this.sinks.add(sink);
    if (!this.es || this.es.readyState === EventSource.CLOSED) this.start();
    else this.replay(sink);
  }
  remove(sink) {
    this.sinks.delete(sink);
    if (!this.sinks.size) this.stop();
  }
  start() {
    this.stop();
    const es = new EventSource(this.url);
    this.es = es;
    es.onerror = () => {
      if (this.es !== es) return;
      this.hello = null;
      this.send({ type: "error", closed: es.readyState === EventSource.CLOSED });
    };
    for (const type of streamEvents) es.addEventListener(type, (e) => { if (this.es === es) this.event(type, e.data); });
  }
  stop() {
    if (this.es) this.es.close();
    this.es = null;
    this.hello = null;
    this.state.clear();
  }
  // restart opens a new stream (after a sign-in: what it may show changed).
  restart() {
    this.stop();
    if (this.sinks.size) this.start();
  }
  event(type, data) {
    if (type === "hello") {
      // The gateway sends its whole state after each hello.
      this.state.clear();
      this.hello = data;
    } else if (type === "node") {
      this.state.set("node/" + JSON.parse(data).id, { type, data });
    } else if (type === "node_removed") {
      this.state.delete("node/" + JSON.parse(data).id);
    } else if (type === "cluster" || type === "status") {
      this.state.set(type, { type, data });
    }
    this.send({ type, data });
  }
  replay(sink) {
    if (this.hello === null) return;
    sink({ type: "hello", data: this.hello, replay: true });
    for (const m of this.state.values()) sink({ ...m, replay: true });
  }
  send(msg) {
    for (const sink of this.sinks) sink(msg);
  }
}

// ---------------------------------------------------------------- worker side

if (typeof SharedWorkerGlobalScope === "function" && self instanceof SharedWorkerGlobalScope) {
  const hub = new EventHub("/api/v1/events");
  self.onconnect = (e) => {
    const port = e.ports[0];
    const sink = (m) => port.postMessage(m);
    port.onmessage = (ev) => {
      const m = ev.data || {};
      switch (m.type) {
        case "join":
          hub.add(sink);
          // The tab holds this lock while it lives: once granted here, it
          // is gone, whether or not it said so.
          if (m.lock && self.navigator.locks) self.navigator.locks.request(m.lock, () => hub.remove(sink));
          break;
        case "leave":
          hub.remove(sink);
          port.close();
          break;
        case "restart":
          hub.restart();
          break;
        case "reconnect":
          if (!hub.es || hub.es.readyState === EventSource.CLOSED) hub.start();
          break;
        case "stop":
          hub.stop();
          hub.send({ type: "error", closed: true });
          break;
      }
    };
    port.start();
  };
}

// ---------------------------------------------------------------- page side

// openEvents joins the browser's one event stream and calls onMessage with
// each message as EventHub gives them. It returns the stream's controls:
// restart (a new stream, after a sign-in), reconnect (open it again if it
// closed for good), stop (after a sign-out) and mode (how it is shared:
// "worker", "leader", "follower" or "tab").
function openEvents(onMessage) {
  const url = "/api/v1/events";
  let impl = null;

  // A lock this tab holds for as long as it is shown, so that whoever
  // shares the stream with it learns when it is gone.
  const tabLock = "dfs-tab-" + Math.random().toString(36).slice(2) + Date.now().toString(36);
  let releaseTab = null;
  const holdTabLock = () => new Promise((held) => {
    if (!navigator.locks) { held(); return; }
    navigator.locks.request(tabLock, () => { held(); return new Promise((r) => { releaseTab = r; }); });
  });

  const viaWorker = async () => {
    await holdTabLock();
    const worker = new SharedWorker("events.js", { name: "dfs-events" });
    const port = worker.port;
    port.onmessage = (e) => onMessage(e.data);
    port.start();
    port.postMessage({ type: "join", lock: navigator.locks ? tabLock : "" });
    return {
      mode: "worker",
      send: (type) => port.postMessage({ type }),
      leave: () => { port.postMessage({ type: "leave" }); port.close(); },
    };
  };

  // Without a SharedWorker: the tab holding the leader lock runs the hub
  // and broadcasts; the others listen, and ask the leader for the state
  // so far when they join.
  const viaLeader = () => {
    const bc = new BroadcastChannel("dfs-events");
    let hub = null, releaseLeader = null, synced = false;
    const state = { mode: "follower" };
    bc.onmessage = (e) => {
      const m = e.data || {};
      if (m.cmd) {
        if (!hub) return;
        if (m.cmd === "sync") hub.replay((x) => bc.postMessage(x));
        else command(m.cmd);
        return;
      }
      if (m.replay && synced) return; // the state for a tab that joined after
      if (m.type === "hello") synced = true;
      onMessage(m);
    };
    const command = (cmd) => {
      if (!hub) { bc.postMessage({ cmd }); return; }
      if (cmd === "restart") hub.restart();
      else if (cmd === "reconnect" && (!hub.es || hub.es.readyState === EventSource.CLOSED)) hub.start();
      else if (cmd === "stop") { hub.stop(); const m = { type: "error", closed: true }; bc.postMessage(m); onMessage(m); }
    };
    navigator.locks.request("dfs-events-leader", () => {
      state.mode = "leader";
      hub = new EventHub(url);
      synced = true;
      hub.add((m) => { bc.postMessage(m); onMessage(m); });
      return new Promise((r) => { releaseLeader = r; });
    });
    bc.postMessage({ cmd: "sync" });
    return {
      get mode() { return state.mode; },
      send: command,
      leave: () => {
        if (hub) { hub.stop(); hub = null; }
        if (releaseLeader) releaseLeader();
        bc.close();
      },
    };
  };

  const perTab = () => {
    const hub = new EventHub(url);
    hub.add(onMessage);
    return {
      mode: "tab",
      send: (cmd) => {
        if (cmd === "restart") hub.restart();
        else if (cmd === "reconnect" && (!hub.es || hub.es.readyState === EventSource.CLOSED)) hub.start();
        else if (cmd === "stop") { hub.stop(); onMessage({ type: "error", closed: true }); }
      },
      leave: () => hub.remove(onMessage),
    };
  };

  let joining = null;
  const join = () => {
    joining = (async () => {
      if (typeof SharedWorker === "function") {
        try { return await viaWorker(); } catch { /* refused (a private window may): the next way */ }
      }
      if (typeof BroadcastChannel === "function" && navigator.locks) return viaLeader();
      return perTab();
    })().then((i) => { impl = i; return i; });
    return joining;
  };
  const leave = () => {
    if (impl) impl.leave();
    impl = null;
    if (releaseTab) { releaseTab(); releaseTab = null; }
  };
  window.addEventListener("pagehide", leave);
  window.addEventListener("pageshow", (e) => { if (e.persisted && !impl) join(); });
  join();

  const send = (cmd) => joining.then((i) => { if (impl === i) i.send(cmd); });
  return {
    restart: () => send("restart"),
    reconnect: () => send("reconnect"),
    stop: () => send("stop"),
    get mode() { return impl ? impl.mode : ""; },
  };
}
