"""Node networking: the routing table a node is given, applied to its kernel, DNS and mesh.

- :mod:`agent.net.agent`: the node's network agent, which applies each routing table;
- :mod:`agent.net.plan`: the overlay networking as data (desired state, names, commands);
- :mod:`agent.net.linux`: the kernel backend that runs the plan (bridges, VXLAN, veths, VIPs);
- :mod:`agent.net.dns`: the embedded DNS server for tasks;
- :mod:`agent.net.mesh`: the routing mesh (published ingress ports), built on
  :mod:`agent.net.proxy` (one published port), which forwards TCP (:mod:`agent.net.tcp`) and
  UDP (:mod:`agent.net.udp`) to the backend :mod:`agent.net.balancer` picks.

Nothing is imported here: the worker loads these modules only when a node has networking.
"""
