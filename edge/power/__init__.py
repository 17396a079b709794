"""Power at the edge: the node's UPS through NUT (``nut``: protocol client, ``ups``: monitor, ``config``)."""
