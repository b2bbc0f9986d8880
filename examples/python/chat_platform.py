"""Plays a chat platform against Switchboard: configures a project, adds three agents, brings
them online, opens conversations, and prints every decision the workers publish, then the inbox
it keeps from them.

Every event carries `time` with millisecond precision: Switchboard applies the events about one
thing (an agent's status, a setting, a conversation) in that order, whatever the number of
workers. Decisions published by different workers may arrive in any order, so the inbox keeps,
per conversation, the decision with the highest `sequence` and drops a lower one arriving late.

    pip install -r examples/python/requirements.txt
    python3 examples/python/chat_platform.py --conversations 10 --seconds 5

A worker must be running (`switchboard run`, or `bash scripts/demo.sh`).
"""

import argparse
import json
import time
import uuid
from datetime import datetime, timezone

import pika

# The contract's exchanges (a deployment may rename them: --inbound, --outbound).
IN, OUT = "switchboard.in", "switchboard.out"


def cloudevent(project, event_type, data):
    now = datetime.now(timezone.utc)
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/examples/python",
        "type": event_type,
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "project": project,
        "data": data,
    }


class Inbox:
    """What a platform shows: each conversation's latest decision. Outputs of several workers
    may overtake each other; `sequence` (20 digits, so it also orders as text) says which came
    last."""

    def __init__(self):
        self.latest = {}  # conversation id -> (sequence, event)

    def take(self, event):
        """Keeps the event unless a later decision about its conversation is already here.
        Returns False for one that arrived too late (dropped)."""
        conversation = event["data"].get("conversation_id")
        sequence = event.get("sequence")
        if conversation is None or sequence is None:
            return True
        if event["type"] == "command.rejected":
            return True  # a rejection changes nothing: it carries the state it was judged against
        known = self.latest.get(conversation)
        if known is not None and known[0] >= sequence:
            return False
        self.latest[conversation] = (sequence, event)
        return True

    def holders(self):
        """Conversation -> its agent (or the state it waits in)."""
        shown = {}
        for conversation, (_, event) in sorted(self.latest.items()):
            data = event["data"]
            shown[conversation] = data.get("agent_id") or event["type"].split(".")[1]
        return shown


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    parser.add_argument("--project", default="example")
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--inbound", default=IN, help="the exchange platforms publish to")
    parser.add_argument("--outbound", default=OUT, help="the exchange workers publish to")
    args = parser.parse_args()

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()  # every publish waits for the broker's confirm
    for exchange in (args.inbound, args.outbound):
        channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    # A private queue that sees every decision.
    decisions = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(decisions, args.outbound, routing_key="#")

    def publish(event_type, data):
        body = json.dumps(cloudevent(args.project, event_type, data))
        channel.basic_publish(
            args.inbound, event_type, body,
            pika.BasicProperties(content_type="application/json", delivery_mode=2),
        )

    publish("project.configured", {"mode": "auto", "new_visitors": "least_loaded"})
    agents = [{"agent_id": name, "max_concurrent": 2} for name in ("ana", "ben", "chloe")]
    publish("agent.upserted", {"agents": agents})
    for agent in agents:
        publish("agent.status_changed", {"agent_id": agent["agent_id"], "status": "online"})
    time.sleep(0.3)  # workers handle events concurrently: let the team exist first
    run = uuid.uuid4().hex[:6]
    for i in range(args.conversations):
        publish("conversation.created", {
            "conversation_id": f"conv-{run}-{i}", "visitor_id": f"visitor-{run}-{i}",
            "channel": "web",
        })
    print(f"published {args.conversations} conversations to project {args.project!r}")

    inbox = Inbox()
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        method, _, body = channel.basic_get(decisions, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        event = json.loads(body)
        if event.get("project") != args.project:
            continue
        data = event["data"]
        late = "" if inbox.take(event) else "  (dropped: a later decision arrived first)"
        print(f'{event["type"]:<24} {data.get("conversation_id", ""):<22} '
              f'{data.get("agent_id", "-"):<8} {data.get("reason", "")}{late}')
    connection.close()
    print("inbox:")
    for conversation, holder in inbox.holders().items():
        print(f"  {conversation:<22} {holder}")


if __name__ == "__main__":
    main()
