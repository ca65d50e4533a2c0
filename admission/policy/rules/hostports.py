"""Ports published on the host: no-host-port (architecture §4)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from admission.findings import Violation
from admission.model import Port, Workload
from admission.policy.rule import Param, rule
from admission.policy.rules.common import container_field, subject


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return text


def _port_numbers(published: str) -> range | None:
    """A port or range as a lazy range: `0-65535` must not become a 65,536-item list on every check."""
    start, _, end = published.partition("-")
    try:
        first, last = int(start), int(end or start)
    except ValueError:
        return None
    return range(first, last + 1)


def _check_ip(value: Any) -> str | None:
    try:
        ipaddress.ip_address(str(value).strip("[]"))
    except ValueError:
        return f"{value!r} is not an IP address (names such as localhost never match a published host IP)"
    return None


def _check_port(value: Any) -> str | None:
    numbers = _port_numbers(str(value))
    if not numbers or numbers[0] < 1 or numbers[-1] > 65535:
        return f"{value!r} is not a port (1-65535) or a range such as 8000-8010"
    return None


def _allowed_numbers(allowed_ports: tuple[Any, ...]) -> set[int]:
    allowed: set[int] = set()
    for item in allowed_ports:
        allowed.update(_port_numbers(str(item)) or ())
    return allowed


def port_allowed(port: Port, *, allowed_ips: tuple[str, ...], allowed_ports: tuple[Any, ...]) -> bool:
    if port.host_ip is not None:
        ip = _ip(port.host_ip)
        if any(ip == _ip(str(a)) for a in allowed_ips):
            return True
    if port.published is None or not allowed_ports:
        return False  # a random host port cannot be on an allow-list
    numbers = _port_numbers(port.published)
    allowed = _allowed_numbers(allowed_ports)
    return bool(numbers) and all(n in allowed for n in numbers)


def _port_key(port: Port) -> str:
    """`hostPort 8080->80/TCP`, `hostPort 0.0.0.0:random->5000/tcp`: the binding itself, never its index in the list."""
    host = f"{port.host_ip}:" if port.host_ip else ""
    return f"hostPort {host}{port.published or 'random'}->{port.target}/{port.protocol}"


@rule("no-host-port", severity="deny", summary="No ports published straight on a host.",
      applies={"kubernetes": "hostPort, hostNetwork; Services: type NodePort, externalIPs",
               "compose": "ports, network_mode"}, services=True,
      params=(Param("allowed_host_ips", list, ("127.0.0.1", "::1"), "host addresses a port may be bound to", _check_ip),
              Param("allowed_host_ports", list, (), "host ports (or ranges, 8000-8010) that may be published; "
                    "every port of a published range must be allowed", _check_port)))
def no_host_port(workload: Workload, params: Mapping[str, Any]) -> Iterator[Violation]:
    """Traffic comes in through a load balancer, a Service or an ingress, never through a port on the host.

    Why:
        A port published on a host interface bypasses the load balancer, TLS termination and network policy,
        and Docker's own iptables rules bypass host firewalls such as ufw. A pod on the host network shares
        the node's network namespace, so every port it opens is open on the node. In compose a port without
        a host IP is published on all interfaces, and the short form `"5000"` publishes a random host port.
        Bindings to an allowed host IP (default loopback) or to a listed host port pass.

        A Kubernetes Service of `type: NodePort` opens its node port (the `nodePort` written, or one the API server
        allocates from 30000-32767) on every node of the cluster: a host port everywhere at once. A node port listed
        in `allowed_host_ports` passes; an allocated one cannot be listed. A Service with `externalIPs` makes
        kube-proxy send every node's traffic for those addresses to its Pods, whoever owns the address: anyone who
        may create a Service can capture another's traffic that way (CVE-2020-8554, which Kubernetes leaves to
        admission: its `DenyServiceExternalIPs` plugin is off by default). `type: LoadBalancer` passes: it is the way in this rule
        asks for, although Kubernetes also allocates node ports for the balancer to reach unless the Service sets
        `allocateLoadBalancerNodePorts: false` (where the balancer reaches Pods directly). `ClusterIP`, headless and
        `ExternalName` Services pass. Where kube-score and Polaris stop at hostPort and hostNetwork, this
        corresponds to PSA baseline's host ports check plus the externalIPs mitigation Kubernetes recommends for
        CVE-2020-8554 (Gatekeeper's `k8sexternalips`).

    Fix:
        Kubernetes: remove `hostPort` and `hostNetwork: true`; expose the port with a Service and an Ingress.
        A NodePort Service: make it `type: ClusterIP` behind an Ingress, or `type: LoadBalancer` (with
        `allocateLoadBalancerNodePorts: false` when the balancer reaches Pods directly). `externalIPs`: remove them
        and use a LoadBalancer; a Service the cluster's operators must keep is exempted by name.
        Compose: put the service behind a reverse proxy, or bind to loopback: `"127.0.0.1:5000:5000"`.
        Replace `network_mode: host` with a bridge network and published ports behind the proxy.

    Example:
        ```yaml
        ports:
          - "5000:5000"            # denied: all host interfaces
          - "127.0.0.1:5000:5000"  # passes
        ```
        ```yaml
        kind: Service
        spec:
          type: NodePort           # denied: port 30080 opens on every node
          ports: [{port: 80, nodePort: 30080}]
          externalIPs: [10.0.0.5]  # denied: captures the traffic of 10.0.0.5 (CVE-2020-8554)
        ```
    """
    if workload.service is not None:
        yield from _service(workload, tuple(params.get("allowed_host_ports", ())))
        return
    if not workload.runtime:
        return
    if workload.host_network is not None:
        value = workload.host_network.value
        if workload.source == "compose":
            message = f"service '{workload.name}' uses network_mode: {value}, so every port it opens is open on the host"
            fix = "remove network_mode and publish only what a reverse proxy needs, bound to 127.0.0.1"
        else:
            message = f"{workload.kind} '{workload.name}' sets hostNetwork: true, so every container port is open on the node"
            fix = "remove hostNetwork and expose the port through a Service and an Ingress or LoadBalancer"
        # compose: `container` is the service name (architecture §2), so container-glob exemptions match it
        container = workload.name if workload.source == "compose" else None
        yield Violation(message=message, remediation=fix, origin=workload.host_network.origin, value=str(value),
                        container=container, key="network_mode" if workload.source == "compose" else "hostNetwork")
    ips = tuple(str(i) for i in params.get("allowed_host_ips", ()))
    ports = tuple(params.get("allowed_host_ports", ()))
    for container in workload.containers:
        for port in container.host_ports:
            if port_allowed(port, allowed_ips=ips, allowed_ports=ports):
                continue
            where = f"on {port.host_ip}" if port.host_ip else "on all host interfaces"
            number = (f"port {port.published}" if port.published is not None
                      else f"container port {port.target} on a random host port")
            if workload.source == "compose":
                message = f"service '{workload.name}' publishes {number} {where}"
                target = port.target
                bound = f"127.0.0.1:{port.published}:{target}" if port.published else f"127.0.0.1::{target}"
                fix = f"publish through a load balancer or reverse proxy, or bind to 127.0.0.1: \"{bound}\""
            else:
                message = f"{subject(workload, container)} binds hostPort {port.published} {where} of the node"
                fix = "remove hostPort and expose the containerPort through a Service (and an Ingress or LoadBalancer)"
            yield Violation(message=message, remediation=fix, origin=port.origin, value=port.text,
                            container=container_field(workload, container), key=_port_key(port))


def _service(workload: Workload, allowed_ports: tuple[Any, ...]) -> Iterator[Violation]:
    """A Service: its node ports when it is a NodePort, and its externalIPs (issue 27)."""
    service = workload.service
    assert service is not None
    who = f"Service '{workload.name}'"
    if service.type.value == "NodePort":
        fix = ("make it type: ClusterIP behind an Ingress, or type: LoadBalancer (with allocateLoadBalancerNodePorts: "
               "false when the balancer reaches Pods directly)")
        if not service.node_ports:
            yield Violation(message=f"{who} is of type NodePort: each of its ports opens a node port on every node",
                            remediation=fix, origin=service.type.origin, value=service.type.value, key="type NodePort")
        for port in service.node_ports:
            if port.published is not None and allowed_ports and port_allowed(port, allowed_ips=(),
                                                                                allowed_ports=allowed_ports):
                continue
            served = f"port {port.target or '?'}/{port.protocol}"
            if port.published is not None:
                message = f"{who} is of type NodePort: nodePort {port.published} ({served}) is open on every node"
            else:
                message = (f"{who} is of type NodePort: {served} gets a node port the API server allocates at random "
                           "(30000-32767), open on every node")
            yield Violation(message=message, remediation=fix, origin=port.origin, value=port.text,
                            key=f"nodePort {port.published or 'random'}->{port.target}/{port.protocol}")
    for ip in service.external_ips:
        yield Violation(
            message=f"{who} sets externalIPs {ip.value}: every node sends traffic for that address to the Service's "
                    "Pods, whoever owns it, so whoever may create a Service can capture it (CVE-2020-8554)",
            remediation="remove externalIPs and expose the Service through a LoadBalancer or an Ingress",
            origin=ip.origin, value=ip.value, key=f"externalIPs {ip.value}")
