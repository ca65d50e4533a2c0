"""server.metricsPort: /metrics on a port of its own, which the Service, the ServiceMonitor and the NetworkPolicy
follow, so scraping is opened to the monitoring peers apart from the API server's path."""

from __future__ import annotations

from tests.chart.conftest import render

MONITORING = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_a_metrics_port_is_served_scraped_and_opened_to_the_scrapers_only() -> None:
    out = render({"server": {"metricsPort": 9090}, "networkPolicy": {"enabled": True, "metricsFrom": MONITORING},
                  "serviceMonitor": {"enabled": True, "force": True}})
    assert out.env()["ADMISSION_METRICS_PORT"] == "9090"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in out.server["ports"]
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in \
        out.one("Service")["spec"]["ports"]
    (endpoint,) = out.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["scheme"] == "http" and "tlsConfig" not in endpoint
    ingress = out.one("NetworkPolicy")["spec"]["ingress"]
    assert {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": MONITORING} in ingress


def test_without_a_metrics_port_metrics_stay_on_the_server_port() -> None:
    out = render({"serviceMonitor": {"enabled": True, "force": True}})
    assert "ADMISSION_METRICS_PORT" not in out.env()
    (endpoint,) = out.one("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "https" and "tlsConfig" in endpoint
