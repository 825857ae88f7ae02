"""What a team's own Terraform made, created by hand against moto with boto3, and
read back for the test.

Usage: by_hand.py create ROLE LOG_GROUP   the role (with its own inline `skiff` policy),
                                          its instance profile and the log group (3 days)
       by_hand.py show ROLE LOG_GROUP     prints {"policy": …, "retention": …} as JSON
AWS_ENDPOINT_URL and the test credentials come from the environment.
"""
import json
import sys

import boto3

action, role, log_group = sys.argv[1:4]
iam = boto3.client("iam")
logs = boto3.client("logs")
POLICY = {"Version": "2012-10-17", "Statement": [{"Sid": "TeamOwned", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::team-bucket/*"}]}

if action == "create":
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName=role, PolicyName="skiff", PolicyDocument=json.dumps(POLICY))
    iam.create_instance_profile(InstanceProfileName=role)
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    logs.create_log_group(logGroupName=log_group)
    logs.put_retention_policy(logGroupName=log_group, retentionInDays=3)
    print("created")
else:
    doc = iam.get_role_policy(RoleName=role, PolicyName="skiff")["PolicyDocument"]
    groups = logs.describe_log_groups(logGroupNamePrefix=log_group)["logGroups"]
    print(json.dumps({"policy": doc, "retention": groups[0].get("retentionInDays")}))
