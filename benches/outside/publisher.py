"""The outside benchmark's publisher: a chat platform's process, publishing with pika (a client
that is not Switchboard's), persistent, to the inbound exchange.

    backlog: publish --count conversation.created as fast as pika goes, then wait until the
             work queue holds them all (nothing consumes it yet);
    rate:    publish --count conversation.created at --rate per second; each conversation id
             carries its publish instant (CLOCK_MONOTONIC ns, shared by the processes of this
             machine) so the receiver, another process, times publish -> output.

Run by `cargo bench --bench throughput -- --only o` (benches/throughput/outside.rs).
"""

import argparse
import json
import sys
import time

import pika


def event(project, number, start_ms, conversation, visitor):
    # `time` grows with the event's number (millisecond precision), as a platform's does.
    at = start_ms + number
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at // 1000)) + ".%03dZ" % (at % 1000)
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "%s-o%d" % (project, number),
            "source": "/bench/outside",
            "type": "conversation.created",
            "time": stamp,
            "project": project,
            "data": {"conversation_id": conversation, "visitor_id": visitor},
        }
    ).encode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--work-queue", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = a backlog")
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.amqp))
    channel = connection.channel()
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    start_ms = int(time.time() * 1000)

    def publish(number, conversation, visitor):
        channel.basic_publish(
            args.exchange,
            "conversation.created",
            event(args.project, number, start_ms, conversation, visitor),
            properties,
        )

    if args.rate <= 0:
        for i in range(1, args.count + 1):
            publish(i, "c%d" % i, "v%d" % i)
        # No confirms (pika's blocking channel would wait a round trip per message): the
        # backlog is complete when the work queue holds it all.
        deadline = time.monotonic() + 60
        while True:
            ready = channel.queue_declare(args.work_queue, passive=True).method.message_count
            if ready >= args.count:
                break
            if time.monotonic() > deadline:
                sys.exit("only %d of %d events reached %s" % (ready, args.count, args.work_queue))
            connection.sleep(0.01)
    else:
        started = time.monotonic()
        sent = 0
        while sent < args.count:
            due = min(args.count, int((time.monotonic() - started) * args.rate) + 1)
            while sent < due:
                sent += 1
                publish(sent, "c%d-%d" % (sent, time.monotonic_ns()), "v%d" % sent)
            # Let pika write and read its frames, then wait for the next millisecond.
            connection.process_data_events(0)
            time.sleep(max(0.0, started + sent / args.rate - time.monotonic()))
    connection.close()
    print(json.dumps({"published": args.count}), flush=True)


if __name__ == "__main__":
    main()
