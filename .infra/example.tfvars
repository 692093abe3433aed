# Copy to <environment>.tfvars and adjust; nothing secret belongs here (passwords and tokens
# are generated into Secrets Manager).
region               = "ap-southeast-3"
name                 = "cezbek-prod"
ses_domain           = "mail.example.com"
email_from           = "cashback@mail.example.com"
informer_host        = "rewards.example.com"
console_host         = "console.example.com"
scylla_node_count    = 3
scylla_instance_type = "i4i.xlarge"
node_count           = { desired = 3, min = 3, max = 9 }
tags                 = { team = "cezbek" }
