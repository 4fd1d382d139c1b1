// Local Serverless plugin (serverless.yml `plugins: ./infra/serverless-ops`): operational
// resources derived from whatever the template holds, so that a function, state machine or queue
// added later is covered without another edit.
//
// * CloudWatch alarms, all notifying custom.alarms.topicArn (an SNS topic, the `alarmTopicArn`
//   parameter) on ALARM and OK:
//     - every Lambda function: Errors >= 1 and Throttles >= 1 in 5 minutes;
//     - every state machine: ExecutionsFailed, ExecutionsTimedOut, ExecutionsAborted >= 1;
//     - every queue in custom.alarms.deadLetterQueues: a visible message (their every message is
//       a failure).
// * DeletionPolicy/UpdateReplacePolicy Retain on every SQS queue and CloudWatch log group (they
//   hold data: events to replay, logs to read after a `serverless remove`).
// * The framework's shared role (IamRoleLambdaExecution) is dropped when no function uses it:
//   every function has its own role (serverless-iam-roles-per-function), and a role nobody assumes
//   would still carry permissions.
'use strict';

const PERIOD = 300;

class LorafilesOps {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { 'after:aws:package:finalize:mergeCustomProviderResources': () => this.apply() };
  }

  log(message) {
    this.serverless.cli.log(`lorafiles-ops: ${message}`);
  }

  apply() {
    const service = this.serverless.service;
    const template = service.provider.compiledCloudFormationTemplate;
    const resources = template.Resources;
    const config = (service.custom && service.custom.alarms) || {};
    const topic = config.topicArn || '';
    const actions = topic ? { AlarmActions: [topic], OKActions: [topic] } : {};
    if (!topic) this.log('alarmTopicArn is empty: the alarms notify nobody');

    const alarm = (id, description, namespace, metric, dimensions, statistic = 'Sum') => {
      resources[id] = {
        Type: 'AWS::CloudWatch::Alarm',
        Properties: {
          AlarmDescription: description,
          Namespace: namespace,
          MetricName: metric,
          Dimensions: dimensions,
          Statistic: statistic,
          Period: PERIOD,
          EvaluationPeriods: 1,
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          TreatMissingData: 'notBreaching',
          ...actions,
        },
      };
    };

    const added = [];
    for (const [id, resource] of Object.entries({ ...resources })) {
      if (resource.Type === 'AWS::Lambda::Function') {
        const name = resource.Properties.FunctionName || id;
        for (const metric of ['Errors', 'Throttles']) {
          alarm(`${id}${metric}Alarm`, `${name}: Lambda ${metric} in ${PERIOD / 60} minutes`, 'AWS/Lambda', metric,
            [{ Name: 'FunctionName', Value: { Ref: id } }]);
          added.push(`${id}${metric}Alarm`);
        }
      } else if (resource.Type === 'AWS::StepFunctions::StateMachine') {
        for (const metric of ['ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted']) {
          alarm(`${id}${metric}Alarm`, `${resource.Properties.StateMachineName || id}: ${metric}`, 'AWS/States', metric,
            [{ Name: 'StateMachineArn', Value: { Ref: id } }]);
          added.push(`${id}${metric}Alarm`);
        }
      }
    }
    for (const id of config.deadLetterQueues || []) {
      if (!resources[id] || resources[id].Type !== 'AWS::SQS::Queue') {
        throw new this.serverless.classes.Error(`custom.alarms.deadLetterQueues: ${id} is not an SQS queue of this stack`);
      }
      alarm(`${id}DepthAlarm`, `${id}: messages waiting (each one is a failure)`, 'AWS/SQS',
        'ApproximateNumberOfMessagesVisible', [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [id, 'QueueName'] } }],
        'Maximum');
      added.push(`${id}DepthAlarm`);
    }

    let retained = 0;
    for (const resource of Object.values(resources)) {
      if (resource.Type === 'AWS::SQS::Queue' || resource.Type === 'AWS::Logs::LogGroup') {
        resource.DeletionPolicy = 'Retain';
        resource.UpdateReplacePolicy = 'Retain';
        retained += 1;
      }
    }

    const shared = 'IamRoleLambdaExecution';
    if (resources[shared]) {
      const others = JSON.stringify({ ...template, Resources: { ...resources, [shared]: undefined } });
      if (!others.includes(`"${shared}"`)) {
        delete resources[shared];
        this.log(`removed ${shared}: every function has its own role`);
      }
    }
    this.log(`${added.length} alarms, ${retained} queues and log groups retained`);
  }
}

module.exports = LorafilesOps;
