"""The outside benchmark's receiver: a chat platform's other process, with pika (a client that
is not Switchboard's). It declares an output queue (quorum, like the work queue) bound to the
outbound exchange with one routing key, prints `ready`, and then:

    drain:   polls the work queue and its output queue (passive declares, no consuming; the
             same for every handler, but not free: idle, about 390 polls a second cost RabbitMQ
             7% of a core and this process 13%, measured on 2026-12-04): prints `first` when
             the first event has been taken off the work queue and `last` when the output
             queue holds --count outputs, then the seconds between them (one clock for every
             handler);
    latency: consumes the output queue and times publish -> output from the instant the
             publisher wrote into each conversation id, until --count outputs or --idle seconds
             without one; prints p50, p99 and max in ms.

The output queue is deleted before it exits. Run by `cargo bench --bench throughput -- --only o`.
"""

import argparse
import json
import sys
import time

import pika


def say(**fields):
    print(json.dumps(fields), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drain", "latency"])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--work-queue", required=True)
    parser.add_argument("--out-exchange", required=True)
    parser.add_argument("--key", required=True, help="routing key of the outputs counted")
    parser.add_argument("--queue", required=True, help="name of the output queue to declare")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--poll-ms", type=float, default=2.0)
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.amqp))
    channel = connection.channel()
    channel.queue_declare(args.queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(args.queue, args.out_exchange, routing_key=args.key)
    try:
        if args.mode == "drain":
            drain(args, connection, channel)
        else:
            latency(args, channel)
    finally:
        channel.queue_delete(args.queue)
        connection.close()


def count(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def drain(args, connection, channel):
    total = count(channel, args.work_queue)
    say(ready=True, backlog=total)
    poll = args.poll_ms / 1000.0
    deadline = time.monotonic() + 120
    while count(channel, args.work_queue) >= total:
        if time.monotonic() > deadline:
            sys.exit("nothing was taken off %s" % args.work_queue)
        time.sleep(poll)
    first = time.monotonic()
    say(first=True)
    outputs = 0
    while outputs < args.count:
        if time.monotonic() - first > 300:
            sys.exit("only %d of %d outputs in %s" % (outputs, args.count, args.queue))
        time.sleep(poll)
        outputs = count(channel, args.queue)
    last = time.monotonic()
    say(last=True, seconds=last - first, outputs=outputs)


def latency(args, channel):
    latencies = []
    channel.basic_qos(prefetch_count=1000)
    say(ready=True)
    done = False
    while not done:
        got = False
        for method, _, body in channel.consume(
            args.queue, auto_ack=True, inactivity_timeout=args.idle
        ):
            if method is None:
                done = True  # idle: whatever did not come by now will not
                break
            got = True
            now = time.monotonic_ns()
            conversation = json.loads(body)["data"]["conversation_id"]
            sent = int(conversation.rsplit("-", 1)[1])
            latencies.append((now - sent) / 1e6)
            if len(latencies) >= args.count:
                done = True
                break
        if not got:
            break
    channel.cancel()
    if not latencies:
        sys.exit("no output received in %s" % args.queue)
    latencies.sort()
    at = lambda q: latencies[int((len(latencies) - 1) * q)]
    say(received=len(latencies), p50=at(0.5), p99=at(0.99), max=latencies[-1])


if __name__ == "__main__":
    main()
