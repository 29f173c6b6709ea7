"""Edge against region: network round trip plus queueing in many small pools or one large one.

``sites`` edge pools of ``servers_per_site`` servers each receive ``arrival_rate / sites``
requests/s and are ``rtt_edge`` seconds away; one regional pool of ``sites * servers_per_site``
servers (same total capacity) receives everything and is ``rtt_region`` seconds away. Mean
response = round trip + mean wait (Erlang C, M/M/c) + mean service. Burstiness enters through the
arrival squared coefficient of variation with the Allen-Cunneen correction of the M/M/c wait,
(arrival_scv + service_scv) / 2 (exact for Poisson arrivals and exponential service).

Units: rates in requests/s, times in seconds.
"""
from __future__ import annotations

import math

from . import checks, theory


def pool_mean_response(arrival_rate, service_rate, servers, *, arrival_scv: float = 1.0,
                       service_scv: float = 1.0) -> float:
    """Mean wait + service (s) of a c-server FIFO pool (Erlang C, Allen-Cunneen for scv != 1);
    inf when arrival_rate >= servers x service_rate."""
    lam = checks.nonnegative("arrival_rate", arrival_rate)
    mu = checks.positive("service_rate", service_rate)
    c = checks.integer("servers", servers, 1)
    ca = checks.nonnegative("arrival_scv", arrival_scv)
    cs = checks.nonnegative("service_scv", service_scv)
    if lam == 0:
        return 1.0 / mu
    if lam >= c * mu:
        return math.inf
    wq = theory.erlang_c(lam, mu, c) / (c * mu - lam)
    return (ca + cs) / 2.0 * wq + 1.0 / mu


def edge_vs_region(arrival_rate, service_rate, sites, servers_per_site, rtt_edge, rtt_region, *,
                   arrival_scv: float = 1.0, service_scv: float = 1.0) -> dict:
    """Mean response (s) at the edge and in the region with the same total servers; winner and
    the queueing and network parts of each."""
    k = checks.integer("sites", sites, 1)
    c = checks.integer("servers_per_site", servers_per_site, 1)
    d_e = checks.nonnegative("rtt_edge", rtt_edge)
    d_r = checks.nonnegative("rtt_region", rtt_region)
    lam = checks.nonnegative("arrival_rate", arrival_rate)
    q_edge = pool_mean_response(lam / k, service_rate, c, arrival_scv=arrival_scv, service_scv=service_scv)
    q_region = pool_mean_response(lam, service_rate, k * c, arrival_scv=arrival_scv, service_scv=service_scv)
    edge, region = d_e + q_edge, d_r + q_region
    return dict(utilisation=lam / (k * c * service_rate), edge_response=edge, region_response=region,
                edge_queueing=q_edge, region_queueing=q_region,
                winner="edge" if edge < region else "region")


def breakeven_rtt_gap(arrival_rate, service_rate, sites, servers_per_site, *, arrival_scv: float = 1.0,
                      service_scv: float = 1.0) -> float:
    """Extra round trip to the region (rtt_region - rtt_edge, s) at which edge and region tie:
    the queueing penalty of splitting capacity. The edge wins when the region is farther than this."""
    r = edge_vs_region(arrival_rate, service_rate, sites, servers_per_site, 0.0, 0.0,
                       arrival_scv=arrival_scv, service_scv=service_scv)
    return r["edge_queueing"] - r["region_queueing"]
