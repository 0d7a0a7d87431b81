"""The control API: what the CLI's cluster commands ask the leader, validated before anything
is written. Services, nodes and tasks (services.py), secrets and configs (secrets.py), networks
(networks.py), stacks (stacks.py), and the rows they show (views.py)."""
