"""The provisioning request log: every tenant SCIM request, masked, searchable by the operator.

`middleware` captures a request, `recorder` buffers and writes batches,
`masking` decides what may be stored, `plugin` wires it into the app; the SQL
is in `service.store.request_log`, the admin route in `service.routes.request_log`.
"""
