/* `capsule job ...`: durable jobs in a store (job.c). */
#ifndef CAPSULE_CLI_JOB_H
#define CAPSULE_CLI_JOB_H

extern const char job_usage[];
int command_job(int argc, char **argv);

#endif
