"""Markdown tables of a benchmark run: per workload (every tool and
scenario), the floors, and a summary against the targets of issue #10."""

TARGET = {"noop": 1 / 3}
TARGET_DEFAULT = 0.5
MEMORY_TARGET_MB = 150
PUSH_SIZE_TARGET = 1.10


def fmt(v, spec="%.3f"):
    return "-" if v is None else spec % v


def best_peer(rows, workload, scenario):
    peers = [r for r in rows if r["workload"] == workload and r["scenario"] == scenario and r["peer"]
             and not r["failed"] and r["median"] is not None]
    return min(peers, key=lambda r: r["median"]) if peers else None


def imgb_row(rows, workload, scenario):
    for r in rows:
        if r["workload"] == workload and r["scenario"] == scenario and r["tool"] == "imgb":
            return r
    return None


def ratio(rows, workload, scenario):
    me, peer = imgb_row(rows, workload, scenario), best_peer(rows, workload, scenario)
    if me is None or peer is None or me["failed"] or me["median"] is None:
        return None
    return me["median"] / peer["median"]


def tables(rows, scenarios):
    out = []
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    for wl in workloads:
        out += ["", "### %s" % wl, "",
                "| scenario | tool | median s | runs (repeated) | imgb / best peer | peak MB | pushed MB | note |",
                "|---|---|---:|---:|---:|---:|---:|---|"]
        for scen in scenarios:
            for r in [r for r in rows if r["workload"] == wl and r["scenario"] == scen]:
                rt = ratio(rows, wl, scen) if r["tool"] == "imgb" else None
                med = "FAILED" if r["failed"] else fmt(r["median"])
                out.append("| %s | %s | %s | %d (%d) | %s | %s | %s | %s |" % (
                    scen, r["tool"], med, r["runs"], r["repeats"], fmt(rt, "%.2f"),
                    fmt(r["peak_mb"], "%.0f"), fmt(r["pushed_mb"], "%.1f"), r["note"]))
        floors = [r for r in rows if r["workload"] == wl and r["scenario"] == "floor"]
        if floors:
            out += ["", "Floors over the same files (median s): " + ", ".join(
                "`%s` %.2f" % (r["tool"], r["median"]) for r in floors)]
    return out


def summary(rows, scenarios):
    out = ["", "### Summary against the targets", "",
           "| workload | scenario | imgb s | best peer s | imgb / best peer | target | met |",
           "|---|---|---:|---:|---:|---:|---|"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    for wl in workloads:
        for scen in scenarios:
            me, peer = imgb_row(rows, wl, scen), best_peer(rows, wl, scen)
            if me is None:
                continue
            rt = ratio(rows, wl, scen)
            target = TARGET.get(scen, TARGET_DEFAULT)
            met = "-" if rt is None and not me["failed"] else ("yes" if rt is not None and rt <= target else "**no**")
            out.append("| %s | %s | %s | %s | %s | <= %.2f | %s |" % (
                wl, scen, "FAILED" if me["failed"] else fmt(me["median"]),
                "-" if peer is None else "%s (%s)" % (fmt(peer["median"]), peer["tool"]),
                fmt(rt, "%.2f"), target, met))
    mem = [r for r in rows if r["tool"] == "imgb" and r["peak_mb"] is not None]
    if mem:
        worst = max(mem, key=lambda r: r["peak_mb"])
        out.append("")
        out.append("imgb peak memory: at most %.0f MB (%s %s); target < %d MB: %s." % (
            worst["peak_mb"], worst["workload"], worst["scenario"], MEMORY_TARGET_MB,
            "met" if worst["peak_mb"] < MEMORY_TARGET_MB else "**missed**"))
    for wl in workloads:
        me = imgb_row(rows, wl, "push")
        bk = [r for r in rows if r["workload"] == wl and r["scenario"] == "push" and r["tool"] == "buildkit"]
        if me and me["pushed_mb"] and bk and bk[0]["pushed_mb"]:
            q = me["pushed_mb"] / bk[0]["pushed_mb"]
            out.append("Pushed size %s: imgb %.1f MB, BuildKit %.1f MB (x%.3f; target <= %.2f: %s)." % (
                wl, me["pushed_mb"], bk[0]["pushed_mb"], q, PUSH_SIZE_TARGET,
                "met" if q <= PUSH_SIZE_TARGET else "**missed**"))
    return out
