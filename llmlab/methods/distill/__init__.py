"""Knowledge distillation for autoregressive LMs (ATKD, Zhong et al., ACL 2024; WHU-ZQH/ATKD)."""
