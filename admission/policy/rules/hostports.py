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
      applies={"kubernetes": "hostPort, hostNetwork", "compose": "ports, network_mode"},
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

    Fix:
        Kubernetes: remove `hostPort` and `hostNetwork: true`; expose the port with a Service and an Ingress.
        Compose: put the service behind a reverse proxy, or bind to loopback: `"127.0.0.1:5000:5000"`.
        Replace `network_mode: host` with a bridge network and published ports behind the proxy.

    Example:
        ```yaml
        ports:
          - "5000:5000"            # denied: all host interfaces
          - "127.0.0.1:5000:5000"  # passes
        ```
    """
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
