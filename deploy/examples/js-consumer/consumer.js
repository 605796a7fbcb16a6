#!/usr/bin/env node
// Example consumer of jobbridge events in Node.js.
//
// It reads the JOBS stream (an ordered consumer by default, a durable pull
// consumer with --durable), parses every message as a CloudEvent in
// structured mode (the CloudEvents NATS binding), validates the body against
// the published JSON Schemas (draft 2020-12, the files `jobbridge schema`
// prints) and prints one line per event:
//
//   ok   <time> <type> <source> <subject> seq=<sequence> state=<state> native="<native status>"
//   FAIL <NATS subject> <what is wrong>
//
// With --count N it stops after N events and exits 1 if any of them failed.
//
//   node consumer.js --server nats://127.0.0.1:4222 --subject 'jobs.*.*.failed.>'
//   node consumer.js --durable audit --count 100
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { parseArgs } = require("node:util");
const { connect, credsAuthenticator, AckPolicy, DeliverPolicy } = require("nats");
const { HTTP, ValidationError } = require("cloudevents");
const Ajv2020 = require("ajv/dist/2020");
const addFormats = require("ajv-formats");

const USAGE = `Usage: node consumer.js [options]
  --server URL      NATS server(s), comma-separated (default $NATS_URL or nats://127.0.0.1:4222)
  --creds FILE      NATS credentials file (default $NATS_CREDS); or NATS_USER/NATS_PASSWORD, NATS_TOKEN
  --stream NAME     stream (default JOBS)
  --subject FILTER  subject filter (default jobs.>), e.g. 'jobs.*.*.failed.>'
  --durable NAME    use (create or bind) this durable pull consumer instead of an ordered one
  --schemas DIR     directory holding job-event-v1.json and job-event-data-v1.json
                    (default: the repository's schemas/, or write them with \`jobbridge schema NAME\`)
  --count N         exit after N events: 0 if all were valid, 1 otherwise
  --timeout SEC     with --count, give up (exit 2) if N events have not come in this long`;

const EVENT_SCHEMA = "job-event-v1.json";
const DATA_SCHEMA = "job-event-data-v1.json";
const STRUCTURED = "application/cloudevents+json";

function options() {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: process.env.NATS_URL || "nats://127.0.0.1:4222" },
      creds: { type: "string", default: process.env.NATS_CREDS || "" },
      stream: { type: "string", default: "JOBS" },
      subject: { type: "string", default: "jobs.>" },
      durable: { type: "string", default: "" },
      schemas: { type: "string", default: path.join(__dirname, "..", "..", "..", "schemas") },
      count: { type: "string", default: "0" },
      timeout: { type: "string", default: "0" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const count = Number(values.count);
  const timeout = Number(values.timeout);
  if (!Number.isInteger(count) || count < 0 || !(timeout >= 0)) {
    throw new Error("--count takes a whole number and --timeout a number of seconds, both >= 0");
  }
  return { ...values, count, timeout };
}

// validator compiles the two schemas once. The envelope schema refers to the
// data schema by its $id (a URN), so both are registered and nothing is ever
// fetched over the network.
function validator(dir) {
  const load = (name) => {
    const file = path.join(dir, name);
    try {
      return JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (err) {
      throw new Error(`cannot read schema ${file}: ${err.message} (pass --schemas DIR, or write it with \`jobbridge schema ${name} > ${name}\`)`);
    }
  };
  // allErrors: report every problem of an event, not only the first.
  // strictSchema refuses unknown keywords (a typo in a schema is an error);
  // strictTypes and strictRequired are Ajv style lints that valid 2020-12
  // schemas need not follow (a "pattern" in an if-branch without "type").
  const ajv = new Ajv2020({ allErrors: true, strictSchema: true, strictNumbers: true, strictTypes: false, strictRequired: false });
  addFormats(ajv); // draft 2020-12 treats "format" as an annotation unless formats are added
  ajv.addSchema(load(DATA_SCHEMA));
  return ajv.compile(load(EVENT_SCHEMA));
}

// check returns the problems of one message ([] when it is a valid event)
// and the parsed CloudEvent.
function check(msg, validate) {
  const contentType = msg.headers ? msg.headers.get("Content-Type") : "";
  if (!contentType.startsWith(STRUCTURED)) {
    return { problems: [`Content-Type is "${contentType}", not ${STRUCTURED}: run the bridge with publish.mode structured`] };
  }
  const body = msg.string();
  let event;
  try {
    // The CloudEvents SDK reads the structured format and checks the
    // CloudEvents rules (required attributes, extension names). Its time
    // attribute is a JS Date string (milliseconds); the wire value keeps
    // the bridge's nanoseconds.
    event = HTTP.toEvent({ headers: { "content-type": contentType }, body });
  } catch (err) {
    const why = err instanceof ValidationError ? `${err.message}: ${JSON.stringify(err.errors)}` : err.message;
    return { problems: [`not a CloudEvent: ${why}`] };
  }
  // The schema describes the wire body, so it validates the JSON as sent
  // (the SDK's object may normalise values such as time).
  const problems = [];
  const json = JSON.parse(body);
  if (!validate(json)) {
    for (const e of validate.errors) problems.push(`${e.instancePath || "(event)"} ${e.message}`);
  }
  // Rules a JSON Schema cannot state: the extensions repeat data.
  const d = json.data || {};
  if (json.sequence !== String(d.sequence).padStart(20, "0")) problems.push(`sequence ${json.sequence} is not data.sequence ${d.sequence}`);
  if (json.jobstate !== d.state) problems.push(`jobstate ${json.jobstate} is not data.state ${d.state}`);
  if (json.jobvendor !== d.vendor || json.jobinstance !== d.instance) problems.push("jobvendor/jobinstance differ from data");
  return { problems, event, json };
}

async function main() {
  const opts = options();
  const validate = validator(opts.schemas);

  const conn = { servers: opts.server.split(","), name: "jobbridge-js-consumer" };
  if (opts.creds) conn.authenticator = credsAuthenticator(fs.readFileSync(opts.creds));
  else if (process.env.NATS_USER) Object.assign(conn, { user: process.env.NATS_USER, pass: process.env.NATS_PASSWORD || "" });
  else if (process.env.NATS_TOKEN) conn.token = process.env.NATS_TOKEN;
  const nc = await connect(conn);
  const js = nc.jetstream();

  let consumer;
  if (opts.durable) {
    // Durable: the server remembers what was acknowledged, so a restart
    // resumes after the last ack. Adding a consumer that exists with the
    // same configuration binds to it.
    const jsm = await nc.jetstreamManager();
    await jsm.consumers.add(opts.stream, {
      durable_name: opts.durable,
      filter_subject: opts.subject,
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.Explicit,
    });
    consumer = await js.consumers.get(opts.stream, opts.durable);
  } else {
    // Ordered: ephemeral, in stream order from the first message, nothing
    // to clean up. (Do not pass deliver_policy: All here: nats 2.29 then
    // never delivers; the default already starts at the beginning.)
    consumer = await js.consumers.get(opts.stream, { filterSubjects: opts.subject });
  }

  let timer;
  if (opts.count > 0 && opts.timeout > 0) {
    timer = setTimeout(() => {
      console.error(`consumer: fewer than ${opts.count} events in ${opts.timeout}s`);
      process.exit(2);
    }, opts.timeout * 1000);
  }
  const stop = async () => {
    await nc.drain();
    process.exit(130);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const messages = await consumer.consume();
  let seen = 0;
  let invalid = 0;
  for await (const m of messages) {
    const { problems, event, json } = check(m, validate);
    if (problems.length === 0) {
      const native = event.data && event.data.native ? event.data.native.status : "";
      console.log(`ok   ${json.time} ${event.type} ${event.source} ${JSON.stringify(event.subject)} seq=${event.sequence} state=${event.jobstate} native=${JSON.stringify(native)} id=${event.id}`);
    } else {
      invalid++;
      console.log(`FAIL ${m.subject} ${problems.join("; ")}`);
    }
    m.ack(); // explicit ack for a durable consumer; an ordered consumer ignores it
    seen++;
    if (opts.count > 0 && seen >= opts.count) break;
  }
  clearTimeout(timer);
  console.error(`consumer: ${seen} events, ${seen - invalid} valid, ${invalid} invalid`);
  await nc.drain();
  process.exitCode = invalid > 0 ? 1 : 0;
}

main().catch((err) => {
  console.error(`consumer: ${err.message}`);
  process.exit(2);
});
