"""Reports for IT staff: monthly availability of every node, camera, kiosk and siren (JSON, CSV, PDF)."""
