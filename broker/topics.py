"""The topic tree: every MQTT topic shoal uses is built here, and nowhere else.

Levels carry ids only (lowercase letters, digits and '-'), never text a user typed, so the
same tree works on mosquitto, NATS, RabbitMQ and EMQX alike. docs/topics.md documents it.

    shoal/enroll/<client>/req            joiner -> managers  (enrollment listener, anonymous)
    shoal/enroll/<client>/resp           managers -> joiner
    shoal/<cluster>/node/<node>/state    node -> managers    (retained; the will says "down")
    shoal/<cluster>/node/<node>/status   node -> managers    task status reports
    shoal/<cluster>/node/<node>/req      node -> managers    requests (certificate renewal, ...)
    shoal/<cluster>/node/<node>/resp     managers -> node    answers to those requests
    shoal/<cluster>/node/<node>/assign   managers -> node    (retained) tasks, secrets, configs
    shoal/<cluster>/node/<node>/logs/<manager>  node -> that manager  lines of followed tasks
    shoal/<cluster>/mgr/<manager>/raft   manager -> manager  Raft messages
    shoal/<cluster>/mgr/<manager>/req    anyone allowed -> that manager (forwarded requests)
    shoal/<cluster>/ctl/<admin>/...      admin clients <-> managers
    shoal/<cluster>/mon/...              retained JSON for people and monitoring tools
    <prefix>/sensor/shoal_<cluster>/<object>/config  the leader -> Home Assistant (retained
                                         discovery entries, opt-in; outside the shoal/ tree)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.errors import BrokerError

__all__ = [
    "DISCOVERY_PREFIX",
    "ROOT",
    "Topics",
    "answers",
    "check_discovery_prefix",
    "check_id",
    "enroll_req",
    "enroll_resp",
]

ROOT = "shoal"
_ID = re.compile(r"^[0-9a-z][0-9a-z-]{0,63}$")
DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's own default discovery prefix
_DISCOVERY_LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # HA's object ids, and a safe prefix


def check_id(value: str, what: str = "id") -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise BrokerError(f"{what} {value!r} cannot be a topic level: use [0-9a-z-], 1-64 chars")
    return value


def check_discovery_prefix(value: str) -> str:
    """A Home Assistant discovery prefix: one topic level of letters, digits, `_` and `-`."""
    if not isinstance(value, str) or not _DISCOVERY_LEVEL.match(value):
        raise BrokerError(
            f"discovery prefix {value!r} cannot be a topic level: use one level of"
            " [A-Za-z0-9_-], 1-64 chars, e.g. homeassistant"
        )
    return value


def enroll_req(client: str) -> str:
    return f"{ROOT}/enroll/{check_id(client, 'client id')}/req"


def enroll_resp(client: str) -> str:
    return f"{ROOT}/enroll/{check_id(client, 'client id')}/resp"


ENROLL_REQ_FILTER = f"{ROOT}/enroll/+/req"


def answers(request_topic: str, reply_topic: str) -> bool:
    """Whether a reply that arrived on ``reply_topic`` may answer a request sent on
    ``request_topic``: on a node's or a joiner's topics only the other half of the same
    ``req``/``resp`` pair; on managers' request topics (which only managers may write), any."""
    rq, rp = request_topic.split("/"), reply_topic.split("/")
    if len(rq) < 3 or len(rp) < 3 or rp[-1] not in ("req", "resp"):
        return False
    if rq[-3] == "mgr" and rp[-3] == "mgr" and rq[:-3] == rp[:-3]:
        return rp[-1] == "req"
    return rq[:-1] == rp[:-1] and {rq[-1], rp[-1]} == {"req", "resp"}


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one cluster."""

    cluster_id: str

    def __post_init__(self) -> None:
        check_id(self.cluster_id, "cluster id")

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.cluster_id}"

    # nodes
    def node(self, node_id: str, leaf: str) -> str:
        return f"{self.base}/node/{check_id(node_id, 'node id')}/{leaf}"

    def node_state(self, node_id: str) -> str:
        return self.node(node_id, "state")

    def node_status(self, node_id: str) -> str:
        return self.node(node_id, "status")

    def node_req(self, node_id: str) -> str:
        return self.node(node_id, "req")

    def node_resp(self, node_id: str) -> str:
        return self.node(node_id, "resp")

    def node_assign(self, node_id: str) -> str:
        return self.node(node_id, "assign")

    def node_net(self, node_id: str) -> str:
        """The node's routing table (retained), from the leader's allocator."""
        return self.node(node_id, "net")

    def node_logs(self, node_id: str, manager_id: str) -> str:
        """Where a node streams the lines of the tasks a manager follows (`service logs -f`)."""
        return self.node(node_id, f"logs/{check_id(manager_id, 'manager id')}")

    def logs_for(self, manager_id: str) -> str:
        """The filter a manager reads its followed lines on, from every node."""
        return f"{self.base}/node/+/logs/{check_id(manager_id, 'manager id')}"

    @staticmethod
    def logs_node_of(topic: str) -> str | None:
        """The node id in a `shoal/<cluster>/node/<node>/logs/<manager>` topic, or None."""
        parts = topic.split("/")
        if len(parts) == 6 and parts[0] == ROOT and parts[2] == "node" and parts[4] == "logs":
            return parts[3] if _ID.match(parts[3]) else None
        return None

    def all_nodes(self, leaf: str) -> str:
        return f"{self.base}/node/+/{leaf}"

    @staticmethod
    def node_of(topic: str) -> str | None:
        """The node id in a `shoal/<cluster>/node/<node>/<leaf>` topic, or None."""
        parts = topic.split("/")
        if len(parts) == 5 and parts[0] == ROOT and parts[2] == "node" and _ID.match(parts[3]):
            return parts[3]
        return None

    # managers
    def mgr_raft(self, manager_id: str) -> str:
        return f"{self.base}/mgr/{check_id(manager_id, 'manager id')}/raft"

    def mgr_req(self, manager_id: str) -> str:
        return f"{self.base}/mgr/{check_id(manager_id, 'manager id')}/req"

    # admin clients and monitoring
    def ctl(self, admin_id: str, leaf: str) -> str:
        return f"{self.base}/ctl/{check_id(admin_id, 'admin id')}/{leaf}"

    def stack_ctl(self, admin_id: str, stack: str, verb: str) -> str:
        """Where an admin client publishes a stack file (``deploy``) or nothing (``rm``)."""
        return self.ctl(admin_id, f"stack/{check_id(stack, 'stack name')}/{verb}")

    def stack_result(self, admin_id: str, stack: str) -> str:
        """Where managers answer that admin client: JSON, retained."""
        return self.ctl(admin_id, f"stack/{check_id(stack, 'stack name')}/result")

    @property
    def stack_ctl_filter(self) -> str:
        return f"{self.base}/ctl/+/stack/+/+"

    @staticmethod
    def parse_stack_ctl(topic: str) -> tuple[str, str, str] | None:
        """(admin id, stack name, verb) of a stack control topic, or None."""
        parts = topic.split("/")
        if (
            len(parts) == 7
            and parts[0] == ROOT
            and parts[2] == "ctl"
            and parts[4] == "stack"
            and _ID.match(parts[3])
            and _ID.match(parts[5])
        ):
            return parts[3], parts[5], parts[6]
        return None

    def mon(self, *levels: str) -> str:
        return "/".join(
            [self.base, "mon", *(check_id(x, "monitoring topic level") for x in levels)]
        )

    # Home Assistant MQTT discovery (outside shoal/: Home Assistant reads <prefix>/#)
    @property
    def discovery_node(self) -> str:
        """The `<node_id>` level of the cluster's discovery topics."""
        return f"shoal_{self.cluster_id}"

    def discovery_config(self, prefix: str, component: str, object_id: str) -> str:
        for level, what in ((component, "discovery component"), (object_id, "object id")):
            if not _DISCOVERY_LEVEL.match(level):
                raise BrokerError(f"{what} {level!r} cannot be a topic level: use [A-Za-z0-9_-]")
        return (
            f"{check_discovery_prefix(prefix)}/{component}/{self.discovery_node}/{object_id}/config"
        )

    def discovery_configs(self, prefix: str | None = None) -> str:
        """The filter of the cluster's discovery entries under `prefix` (None: any prefix)."""
        head = "+" if prefix is None else check_discovery_prefix(prefix)
        return f"{head}/+/{self.discovery_node}/+/config"

    def discovery_tree(self, prefix: str | None = None) -> str:
        """What the ACL grants on discovery topics under `prefix` (None: any prefix)."""
        head = "+" if prefix is None else check_discovery_prefix(prefix)
        return f"{head}/+/{self.discovery_node}/#"
